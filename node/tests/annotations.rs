//! Free-VF accounting on the Node object, against a loopback HTTP server
//! that checks each request the way the API server receives it.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{two_pf_node, Daemon};
use ledger::{Claim, Ledger};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

/// A minimal HTTP/1.1 server: answers `status` to the first `fail` requests, 200 after.
async fn api_server(fail: usize) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (sock, _) = l.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (mut len, mut ctype) = (0usize, String::new());
            loop {
                let mut h = String::new();
                r.read_line(&mut h).await.unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "content-type" => ctype = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).await.unwrap();
            n += 1;
            let status = if n <= fail {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let reply = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}");
            w.write_all(reply.as_bytes()).await.unwrap();
            let _ = tx.send(Seen {
                at: Instant::now(),
                method,
                path,
                content_type: ctype,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
        }
    });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>, within: Duration) -> Seen {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no PATCH in time")
        .unwrap()
}

fn claim(id: &str) -> Claim {
    Claim {
        network: "dpdk-net".into(),
        container_id: id.into(),
        ifname: "net1".into(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn node_annotations_follow_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = two_pf_node(&root, 2);
    let cfg = tmp.path().join("config.json");
    fs::write(&cfg, r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens1f0", "ens2f0"]}}]}"#).unwrap();
    let state = tmp.path().join("state");
    // One VF already held before the daemon starts.
    let ledger = Ledger::new(&state);
    ledger
        .set_claim("0000:01:10.0".parse().unwrap(), &claim("c0"))
        .unwrap();
    // The first PATCH fails: the daemon retries.
    let (url, mut rx) = api_server(1).await;
    let _d = Daemon::start(
        &root,
        &cfg,
        &tmp.path().join("kubelet"),
        &state,
        &["--api-server", &url, "--node-name", "worker-1"],
    );

    let first = next(&mut rx, Duration::from_secs(10)).await;
    let retry = next(&mut rx, Duration::from_secs(5)).await;
    for s in [&first, &retry] {
        assert_eq!(s.method, "PATCH");
        assert_eq!(s.path, "/api/v1/nodes/worker-1");
        assert_eq!(s.content_type, "application/merge-patch+json");
    }
    assert_eq!(retry.body, first.body);
    let ann = &retry.body["metadata"]["annotations"];
    assert_eq!(ann["sriov/vfCount"], "3");
    assert_eq!(ann["dpdk-cni.io/free-vfs"], "3");
    assert_eq!(ann["dpdk-cni.io/free-vfs-by-pool"], r#"{"intel.com/vf":3}"#);
    assert_eq!(
        retry.body["metadata"]["labels"]["sriov/freeVFAvailable"],
        "true"
    );

    // Two pods start close together: one PATCH, not sooner than a second after the last.
    ledger
        .set_claim("0000:01:10.2".parse().unwrap(), &claim("c1"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ledger
        .set_claim("0000:81:10.0".parse().unwrap(), &claim("c2"))
        .unwrap();
    let s = next(&mut rx, Duration::from_secs(3)).await;
    assert!(
        s.at - retry.at >= Duration::from_millis(950),
        "{:?}",
        s.at - retry.at
    );
    assert_eq!(s.body["metadata"]["annotations"]["sriov/vfCount"], "1");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "an extra PATCH"
    );

    // The last free VF is taken: the count is 0 and the labels are removed (null in a merge-patch).
    ledger
        .set_claim("0000:81:10.2".parse().unwrap(), &claim("c3"))
        .unwrap();
    let s = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(s.body["metadata"]["annotations"]["sriov/vfCount"], "0");
    let labels = s.body["metadata"]["labels"].as_object().unwrap();
    assert!(
        labels["sriov/freeVFAvailable"].is_null()
            && labels["dpdk-cni.io/free-vfs-available"].is_null()
    );

    // A pod goes away: its VF is free again.
    ledger
        .release_claim("0000:01:10.2".parse().unwrap(), &claim("c1"))
        .unwrap();
    let s = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(s.body["metadata"]["annotations"]["sriov/vfCount"], "1");
    assert_eq!(
        s.body["metadata"]["labels"]["sriov/freeVFAvailable"],
        "true"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_claim_that_cannot_be_read_is_not_counted_free() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _node = two_pf_node(&root, 2);
    let cfg = tmp.path().join("config.json");
    fs::write(&cfg, r#"{"resourceList": [{"resourceName": "vf", "selectors": {"pfNames": ["ens1f0", "ens2f0"]}}]}"#).unwrap();
    let state = tmp.path().join("state");
    let ledger = Ledger::new(&state);
    ledger
        .set_claim("0000:01:10.0".parse().unwrap(), &claim("c0"))
        .unwrap();
    // A claim file cut short (a crash, a full disk): someone holds 0000:81:10.2.
    let broken = state.join("devices/0000:81:10.2.json");
    fs::write(&broken, r#"{"network": "dpdk-net", "containerID": "c1""#).unwrap();
    let (url, mut rx) = api_server(0).await;
    let _d = Daemon::start(
        &root,
        &cfg,
        &tmp.path().join("kubelet"),
        &state,
        &["--api-server", &url, "--node-name", "worker-1"],
    );
    let s = next(&mut rx, Duration::from_secs(10)).await;
    let ann = &s.body["metadata"]["annotations"];
    assert_eq!(ann["sriov/vfCount"], "2", "{ann}");
    assert_eq!(ann["dpdk-cni.io/free-vfs-by-pool"], r#"{"intel.com/vf":2}"#);

    // Its pod's DEL removes it: free again.
    fs::remove_file(&broken).unwrap();
    let s = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(s.body["metadata"]["annotations"]["sriov/vfCount"], "3");
}
