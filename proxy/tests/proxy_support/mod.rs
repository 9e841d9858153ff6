//! Shared helpers for the `kubecast proxy` tests: a proxy process per test
//! (the built binary), a throwaway PKI (rcgen), and a small HTTP/1.1 client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use kubecast_tests::process::LoggedProcess;

/// Every test step waits at most this long.
pub const STEP: Duration = Duration::from_secs(20);

/// A scratch directory, removed on drop.
pub use kubecast_tests::scratch::TempDir as Scratch;

/// A `kubecast proxy` process, killed on drop.
#[derive(Debug)]
pub struct Proxy {
    pub process: LoggedProcess,
    pub addr: SocketAddr,
    pub home: Scratch,
}

impl Proxy {
    /// Starts `kubecast proxy --listen 127.0.0.1:0 ARGS` with an empty HOME
    /// (also its working directory, so the default `./recordings` lands
    /// there) and no in-cluster environment.
    pub fn start(args: &[&str]) -> Proxy {
        Self::start_with_home(Scratch::create("home"), args)
    }

    pub fn start_with_home(home: Scratch, args: &[&str]) -> Proxy {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubecast"));
        command
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null());
        let mut process = LoggedProcess::spawn("proxy", command);
        let addr = process.wait_line_blocking("listening line", |line| {
            line.contains(" listening ")
                .then(|| line.split("addr=").nth(1))
                .flatten()
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok())
        });
        Proxy {
            process,
            addr,
            home,
        }
    }

    /// Runs `kubecast proxy ARGS` expecting it to refuse to start; returns
    /// its stderr.
    pub fn start_error(args: &[&str]) -> String {
        let home = Scratch::create("home");
        let output = Command::new(env!("CARGO_BIN_EXE_kubecast"))
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .output()
            .expect("run kubecast proxy");
        assert!(!output.status.success(), "the proxy should refuse {args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Waits until a log line contains every one of `needles`.
    pub async fn wait_log(&self, needles: &[&str]) -> String {
        self.process.wait_log(needles, 1).await.remove(0)
    }

    /// Sends SIGTERM (to this process only, by its id).
    pub fn terminate(&self) {
        self.process.signal("TERM");
    }

    /// Sends signal `name` (e.g. `HUP`) to this process only.
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits at most `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout).await
    }
}

/// A throwaway CA with a server certificate for 127.0.0.1/localhost.
pub struct Pki {
    pub dir: Scratch,
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = Scratch::create(name);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("kubecast test CA {name}"),
        );
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca = dir.write("ca.crt", ca_cert.pem());
        let server_cert = dir.write("server.crt", cert.pem());
        let server_key = dir.write("server.key", key.serialize_pem());
        Pki {
            dir,
            ca,
            server_cert,
            server_key,
            issuer,
        }
    }

    /// A client certificate with CN `user` and O `group` (rcgen keeps one
    /// entry per attribute type); returns (cert, key) paths.
    pub fn client(&self, user: &str, group: Option<&str>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            self.dir.write(&format!("{user}.crt"), cert.pem()),
            self.dir.write(&format!("{user}.key"), key.serialize_pem()),
        )
    }

    /// `--tls-cert F --tls-key F` for the proxy.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.server_cert.clone(),
            "--tls-key".into(),
            self.server_key.clone(),
        ]
    }
}

/// A response read by [`http1`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole
/// response (content-length or until EOF; chunked bodies are decoded).
pub async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(STEP, exchange)
        .await
        .expect("HTTP exchange timed out");
    let split = find(&raw, b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    RawResponse { status, head, body }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The header values an upstream request carried under `name`.
pub fn header_values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The `.cast` files in `dir` (not the hidden temporary ones), sorted.
pub fn casts(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "cast")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    names
}

/// Waits (at most [`STEP`]) until `dir` holds at least `n` casts; returns
/// them, sorted.
pub async fn wait_for_casts(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + STEP;
    loop {
        let found = casts(dir);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} cast(s) in {}: {found:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
