//! A minimal Kubernetes API client: one JSON merge-patch on the Node object.
//!
//! The daemon needs nothing else from the API server, at most once a second,
//! so it speaks HTTP/1.1 with hyper over rustls (ring) instead of pulling in
//! kube-rs and k8s-openapi (several minutes of build on a small machine, and
//! megabytes of resident schema code). Credentials come from the pod's
//! service account (in-cluster) or a kubeconfig file (token or client
//! certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::{NodeError, Result};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    /// Re-read on every request: projected service account tokens rotate.
    TokenFile(PathBuf),
}

/// Where the API server is and how to reach it.
#[derive(Clone)]
pub struct KubeClient {
    scheme_https: bool,
    host: String,
    port: u16,
    auth: Auth,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("https", &self.scheme_https)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

fn kerr(msg: impl std::fmt::Display) -> NodeError {
    NodeError::Kube(msg.to_string())
}

/// Standard base64 (RFC 4648), padding optional, whitespace ignored; for
/// the `*-data` fields of a kubeconfig.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[derive(Debug, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<Named<KContext>>,
    #[serde(default)]
    clusters: Vec<Named<KCluster>>,
    #[serde(default)]
    users: Vec<Named<KUser>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Debug, Deserialize)]
struct KContext {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KCluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KUser {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(NodeError::read(path))
}

/// Inline `-data` (base64) or a file relative to the kubeconfig.
fn data_or_file(
    data: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
) -> Result<Option<Vec<u8>>> {
    if let Some(d) = data {
        return base64_decode(d)
            .map(Some)
            .ok_or_else(|| kerr("kubeconfig: invalid base64 data"));
    }
    match file {
        Some(f) => read(&base.join(f)).map(Some),
        None => Ok(None),
    }
}

fn tls_config(
    ca_pem: &[u8],
    client: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| kerr(format!("CA certificate: {e}")))?)
            .map_err(|e| kerr(format!("CA certificate: {e}")))?;
    }
    let builder = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(kerr)?
        .with_root_certificates(roots);
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| kerr(format!("client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| kerr(format!("client key: {e}")))?;
            builder.with_client_auth_cert(certs, key).map_err(kerr)?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl KubeClient {
    /// A client for `server` (`https://host:port` or, in tests, `http://`).
    fn for_server(
        server: &str,
        auth: Auth,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> Result<Self> {
        let uri: Uri = server
            .parse()
            .map_err(|e| kerr(format!("server {server:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(kerr(format!("server {server:?} is not http(s)://"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| kerr(format!("server {server:?} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if https && tls.is_none() {
            return Err(kerr("https server without a CA"));
        }
        Ok(KubeClient {
            scheme_https: https,
            host,
            port,
            auth,
            tls: if https { tls } else { None },
        })
    }

    /// Plain HTTP with no credentials (tests against a local server).
    #[cfg(feature = "test-hooks")]
    pub fn insecure_http(server: &str) -> Result<Self> {
        Self::for_server(server, Auth::None, None)
    }

    /// The pod's service account and the `KUBERNETES_SERVICE_*` environment.
    pub fn in_cluster() -> Result<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            kerr("KUBERNETES_SERVICE_HOST is not set: not in a pod (use --kubeconfig)")
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let ca = read(&Path::new(SA_DIR).join("ca.crt"))?;
        let tls = tls_config(&ca, None)?;
        Self::for_server(
            &format!("https://{host}:{port}"),
            Auth::TokenFile(Path::new(SA_DIR).join("token")),
            Some(tls),
        )
    }

    /// The current context of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let data = read(path)?;
        let kc: Kubeconfig =
            serde_yaml::from_slice(&data).map_err(|e| kerr(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == kc.current_context)
            .or(kc.contexts.first())
            .ok_or_else(|| kerr(format!("{}: no context", path.display())))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.value.cluster)
            .ok_or_else(|| {
                kerr(format!(
                    "{}: no cluster {}",
                    path.display(),
                    ctx.value.cluster
                ))
            })?;
        let user = kc.users.iter().find(|u| u.name == ctx.value.user);
        let default_user = KUser::default();
        let u = user.map(|u| &u.value).unwrap_or(&default_user);
        let c = &cluster.value;
        if c.insecure_skip_tls_verify {
            return Err(kerr(
                "insecure-skip-tls-verify is not supported: give the cluster's CA",
            ));
        }
        let auth = match (&u.token, &u.token_file) {
            (Some(t), _) => Auth::Token(t.clone()),
            (None, Some(f)) => Auth::TokenFile(base.join(f)),
            _ => Auth::None,
        };
        let tls = if c.server.starts_with("https") {
            let ca = data_or_file(
                &c.certificate_authority_data,
                &c.certificate_authority,
                base,
            )?
            .ok_or_else(|| kerr("kubeconfig: the cluster has no certificate-authority"))?;
            let cert = data_or_file(&u.client_certificate_data, &u.client_certificate, base)?;
            let key = data_or_file(&u.client_key_data, &u.client_key, base)?;
            Some(tls_config(&ca, cert.zip(key))?)
        } else {
            None
        };
        Self::for_server(&c.server, auth, tls)
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| kerr(format!("connecting to {}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| kerr(format!("server name {}: {e}", self.host)))?;
                let s = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| kerr(format!("TLS with {}: {e}", self.host)))?;
                Ok(Box::new(s))
            }
        }
    }

    /// One request; the status and body of the answer.
    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let io = self.connect().await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(kerr)?;
        let conn = tokio::spawn(conn);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority)
            .header("content-type", content_type)
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("dpdk-cni-node/", env!("CARGO_PKG_VERSION")),
            );
        let token = match &self.auth {
            Auth::None => None,
            Auth::Token(t) => Some(t.clone()),
            Auth::TokenFile(p) => Some(String::from_utf8_lossy(&read(p)?).trim().to_string()),
        };
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let data = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = req.body(Full::new(data)).map_err(kerr)?;
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .map_err(|_| kerr("the API server did not answer within 10s"))?
            .map_err(kerr)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        conn.abort();
        Ok((status, body))
    }

    /// A JSON request that must succeed; its answer as JSON (`null` when empty).
    async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let what = format!("{method} {path}");
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (status, data) = self.request(method, path, ct, body).await?;
        if !status.is_success() {
            return Err(NodeError::Api {
                status: status.as_u16(),
                msg: format!("{what}: {status}: {}", excerpt(&data)),
            });
        }
        if data.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&data).map_err(|e| kerr(format!("{what}: answer: {e}")))
    }

    /// `PATCH /api/v1/nodes/<name>` with `application/merge-patch+json`.
    pub async fn patch_node(&self, name: &str, patch: &Value) -> Result<()> {
        self.json(Method::PATCH, &format!("/api/v1/nodes/{name}"), Some(patch))
            .await
            .map(drop)
    }

    /// `GET` an object.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None).await
    }

    /// `POST` (create) an object.
    pub async fn create(&self, path: &str, obj: &Value) -> Result<Value> {
        self.json(Method::POST, path, Some(obj)).await
    }

    /// `PUT` (replace) an object.
    pub async fn replace(&self, path: &str, obj: &Value) -> Result<Value> {
        self.json(Method::PUT, path, Some(obj)).await
    }

    /// `DELETE` an object; one that is gone already is fine.
    pub async fn delete(&self, path: &str) -> Result<()> {
        match self.json(Method::DELETE, path, None).await {
            Err(NodeError::Api { status: 404, .. }) => Ok(()),
            other => other.map(drop),
        }
    }
}

/// The start of an error answer, for a message.
fn excerpt(data: &[u8]) -> String {
    String::from_utf8_lossy(data).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGVs\nbG8").unwrap(), b"hello");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn kubeconfig_with_token_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:8001'}\nusers:\n- name: u\n  user: {token: abc}\n",
        )
        .unwrap();
        let c = KubeClient::from_kubeconfig(&p).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.scheme_https),
            ("127.0.0.1", 8001, false)
        );
        assert!(matches!(c.auth, Auth::Token(ref t) if t == "abc"));
    }

    #[test]
    fn https_needs_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(
            &p,
            "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://10.0.0.1:6443'}}]\n",
        )
        .unwrap();
        let e = KubeClient::from_kubeconfig(&p).unwrap_err().to_string();
        assert!(e.contains("certificate-authority"), "{e}");
    }
}
