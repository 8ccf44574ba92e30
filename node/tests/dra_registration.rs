//! The DRA driver's registration socket answers the kubelet's plugin
//! watcher, whose gRPC client (grpc-go 1.83) sends the socket's path,
//! percent-encoded, as the HTTP/2 `:authority`. The request is written here
//! with the headers that client sends (seen on the wire); the same bytes to
//! a plain tonic server are refused, which is why the socket has a front
//! (`dra/authority.rs`).

use std::time::Duration;

use dpdk_cni_node::registration_api::registration_server::{Registration, RegistrationServer};
use dpdk_cni_node::registration_api::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use loona_hpack::Encoder;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::{Request, Response, Status};

#[derive(Clone)]
struct Info;

#[tonic::async_trait]
impl Registration for Info {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: "DRAPlugin".into(),
            name: "vf.dpdk-cni.io".into(),
            endpoint: "/var/lib/kubelet/plugins/vf.dpdk-cni.io/dra.sock".into(),
            supported_versions: vec!["v1.DRAPlugin".into()],
        }))
    }
    async fn notify_registration_status(
        &self,
        _: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut f = vec![l[1], l[2], l[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// GetInfo as the kubelet's plugin watcher sends it to `sock`.
fn get_info_request(sock: &str) -> Vec<u8> {
    let authority = sock.replace('/', "%2F");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    let block = Encoder::new().encode([
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/pluginregistration.Registration/GetInfo"),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-go/1.83.2"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"4998674u"),
    ]);
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // an empty message, END_STREAM
    out
}

/// What the server answered on stream 1: the first DATA payload, or the
/// RST_STREAM error code.
async fn answer(sock: &std::path::Path) -> Result<Vec<u8>, u32> {
    let mut c = UnixStream::connect(sock).await.unwrap();
    c.write_all(&get_info_request(&sock.display().to_string()))
        .await
        .unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            c.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            let mut payload = vec![0u8; len];
            c.read_exact(&mut payload).await.unwrap();
            match (head[3], stream) {
                (0x0, 1) if len > 0 => return Ok(payload),
                (0x3, 1) => {
                    return Err(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]))
                }
                (0x4, 0) if head[4] & 1 == 0 => {
                    c.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap()
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer in 10 s")
}

#[tokio::test(flavor = "current_thread")]
async fn get_info_with_a_path_authority_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vf.dpdk-cni.io-reg.sock");
    let task =
        dpdk_cni_node::dra::serve_registration(&sock, RegistrationServer::new(Info)).unwrap();
    let data = answer(&sock).await.expect("the stream was reset");
    // A gRPC message: flag, length, then the PluginInfo.
    let info = PluginInfo::decode(&data[5..]).unwrap();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.supported_versions, vec!["v1.DRAPlugin".to_string()]);
    task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn the_same_request_to_a_plain_server_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plain.sock");
    let task = dpdk_cni_node::dra::serve_socket(&sock, RegistrationServer::new(Info)).unwrap();
    // PROTOCOL_ERROR: what the kubelet saw before the front.
    assert_eq!(answer(&sock).await, Err(0x1));
    task.abort();
}
