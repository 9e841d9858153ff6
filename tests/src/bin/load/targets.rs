//! What the load runs against: the upstream itself, two plain TCP relays,
//! and `kubecast proxy` in three recording modes — each but the first a
//! separate process, so its memory can be read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a spawned process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Log lines of a spawned process kept for error messages.
const KEPT_LOG_LINES: usize = 40;
/// How long recordings may take to be stored after their sessions ended.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The five targets of issue #8 (the relay baseline is two: socat and a
/// tokio `copy_bidirectional` relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// (a) the test upstream, directly.
    Direct,
    /// (b) `socat` relaying TCP.
    Socat,
    /// (b) a minimal tokio `copy_bidirectional` relay (`kubecast-load relay`).
    Relay,
    /// (c) `kubecast proxy`, recording off by rule.
    Proxy,
    /// (d) `kubecast proxy` recording to `--recordings-dir`.
    ProxyDir,
    /// (e) `kubecast proxy` recording to a `kubecast recorder` over v2.
    ProxyRecorder,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::Socat,
        Kind::Relay,
        Kind::Proxy,
        Kind::ProxyDir,
        Kind::ProxyRecorder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socat => "socat",
            Kind::Relay => "relay",
            Kind::Proxy => "proxy",
            Kind::ProxyDir => "proxy-dir",
            Kind::ProxyRecorder => "proxy-recorder",
        }
    }

    /// The column heading of the table.
    pub fn heading(self) -> &'static str {
        match self {
            Kind::Direct => "(a) direct",
            Kind::Socat => "(b) socat",
            Kind::Relay => "(b) tokio relay",
            Kind::Proxy => "(c) proxy, no recording",
            Kind::ProxyDir => "(d) proxy → dir",
            Kind::ProxyRecorder => "(e) proxy → recorder v2",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether sessions through it are recorded (and so leave casts).
    pub fn records(self) -> bool {
        matches!(self, Kind::ProxyDir | Kind::ProxyRecorder)
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub kubecast: PathBuf,
    pub socat: PathBuf,
    /// This tool, for its `relay` subcommand.
    pub load: PathBuf,
}

/// A spawned process, killed on drop; its stderr is drained by a thread.
#[derive(Debug)]
struct Spawned {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Spawns `cmd` and waits for the line `listening(line)` picks an
    /// address from (read from stderr, or from stdout with `stdout`).
    fn start(
        name: &'static str,
        mut cmd: Command,
        stdout: bool,
        listening: fn(&str) -> Option<SocketAddr>,
    ) -> Result<(Spawned, SocketAddr), String> {
        cmd.stdin(Stdio::null());
        if stdout {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawning {name}: {e}"))?;
        let pipe: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), _) if stdout => Box::new(out),
            (_, Some(err)) => Box::new(err),
            _ => return Err(format!("{name}: no output pipe")),
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening(&line) {
                    let _ = tx.send(addr);
                }
                let mut log = thread_log.lock().unwrap_or_else(|p| p.into_inner());
                if log.len() == KEPT_LOG_LINES {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        let mut spawned = Spawned { name, child, log };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok((spawned, addr)),
            Err(_) => {
                let _ = spawned.child.kill();
                let _ = spawned.child.wait();
                Err(format!("{name} did not start: {}", spawned.log_tail()))
            }
        }
    }

    fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A target, ready for sessions.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The intermediary whose memory is measured (none for `Direct`).
    relay: Option<Spawned>,
    recorder: Option<Spawned>,
    /// Where recordings land (recording targets).
    cast_dir: Option<PathBuf>,
    scratch: Option<PathBuf>,
}

impl Running {
    /// Starts `kind` in front of `upstream`; `scratch` is a fresh directory
    /// for its files.
    pub fn start(
        kind: Kind,
        upstream: SocketAddr,
        bins: &Binaries,
        scratch: &Path,
    ) -> Result<Running, String> {
        let dir = scratch.join(kind.name());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut running = Running {
            addr: upstream,
            relay: None,
            recorder: None,
            cast_dir: None,
            scratch: Some(dir.clone()),
        };
        match kind {
            Kind::Direct => {}
            Kind::Socat => {
                let port = free_port()?;
                let mut cmd = Command::new(&bins.socat);
                cmd.arg(format!(
                    "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay"
                ))
                .arg(format!("TCP:{upstream},nodelay"));
                let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn();
                let child = child.map_err(|e| format!("spawning socat: {e}"))?;
                running.relay = Some(Spawned {
                    name: "socat",
                    child,
                    log: Arc::default(),
                });
                running.addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_connectable(running.addr)?;
            }
            Kind::Relay => {
                let mut cmd = Command::new(&bins.load);
                cmd.args(["relay", "--listen", "127.0.0.1:0", "--to"])
                    .arg(upstream.to_string());
                let (spawned, addr) = Spawned::start("relay", cmd, true, |line| {
                    line.strip_prefix("listening on ")?.trim().parse().ok()
                })?;
                running.relay = Some(spawned);
                running.addr = addr;
            }
            Kind::Proxy | Kind::ProxyDir | Kind::ProxyRecorder => {
                let casts = dir.join("casts");
                let mut args: Vec<String> = vec![
                    "--auth".into(),
                    "noauth".into(),
                    "--upstream".into(),
                    format!("http://{upstream}"),
                    "--recordings-dir".into(),
                    casts.display().to_string(),
                ];
                if kind == Kind::Proxy {
                    let rules = dir.join("rules.yaml");
                    std::fs::write(&rules, "default:\n  record: false\n")
                        .map_err(|e| format!("{}: {e}", rules.display()))?;
                    args.extend(["--config".into(), rules.display().to_string()]);
                }
                if kind == Kind::ProxyRecorder {
                    let mut cmd = Command::new(&bins.kubecast);
                    // The default 1 GiB cap would cut the 1 GiB throughput
                    // run's cast (escaping makes it larger than its output).
                    cmd.args(["recorder", "--listen", "127.0.0.1:0", "--dir"])
                        .arg(&casts)
                        .args(["--max-recording-bytes", "1099511627776"])
                        .env_remove("RUST_LOG");
                    let (spawned, addr) = Spawned::start("recorder", cmd, false, |line| {
                        line.split("listening on ")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })?;
                    running.recorder = Some(spawned);
                    args.extend(["--recorder".into(), addr.to_string()]);
                }
                let mut cmd = Command::new(&bins.kubecast);
                cmd.args(["proxy", "--listen", "127.0.0.1:0"])
                    .args(&args)
                    .current_dir(&dir)
                    .env_remove("KUBECONFIG")
                    .env_remove("KUBERNETES_SERVICE_HOST")
                    .env_remove("RUST_LOG");
                let (spawned, addr) = Spawned::start("kubecast proxy", cmd, false, |line| {
                    if !line.contains(" listening ") {
                        return None;
                    }
                    line.split("addr=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })?;
                running.relay = Some(spawned);
                running.addr = addr;
                if kind.records() {
                    running.cast_dir = Some(casts);
                }
            }
        }
        Ok(running)
    }

    /// Resident memory of the intermediary in KiB: `VmRSS` of the process
    /// and, for socat (a process per connection), of all its descendants.
    pub fn rss_kib(&self) -> Option<u64> {
        let relay = self.relay.as_ref()?;
        Some(tree_rss_kib(relay.child.id()))
    }

    /// On a recording target: waits until `sessions` recordings are
    /// stored complete (no partial file left), checks none is marked
    /// incomplete, returns their total size and deletes them (a gigabyte per
    /// throughput run would otherwise pile up). Other targets: `Ok(0)`.
    pub fn settle_casts(&self, sessions: usize) -> Result<u64, String> {
        let Some(dir) = &self.cast_dir else {
            return Ok(0);
        };
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let mut files = Vec::new();
            list_files(dir, &mut files);
            let partial = files
                .iter()
                .filter(|(name, _)| name.ends_with(".partial"))
                .count();
            let incomplete: Vec<&String> = files
                .iter()
                .map(|(name, _)| name)
                .filter(|name| name.ends_with("_incomplete.cast"))
                .collect();
            let complete = files.iter().filter(|(n, _)| n.ends_with(".cast")).count();
            if !incomplete.is_empty() {
                let message = format!("recordings marked incomplete: {incomplete:?}");
                remove(dir, &files);
                return Err(message);
            }
            if partial == 0 && complete >= sessions {
                remove(dir, &files);
                return Ok(files.iter().map(|(_, len)| len).sum());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{complete} of {sessions} recordings complete ({partial} partial) after {SETTLE_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the intermediary and recorder logged, for errors.
    pub fn log_tail(&self) -> String {
        [&self.relay, &self.recorder]
            .into_iter()
            .flatten()
            .map(|s| format!("[{}]\n{}", s.name, s.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the intermediary is still running.
    pub fn alive(&mut self) -> Result<(), String> {
        for spawned in [&mut self.relay, &mut self.recorder].into_iter().flatten() {
            if let Ok(Some(status)) = spawned.child.try_wait() {
                return Err(format!("{} exited ({status})", spawned.name));
            }
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.relay = None;
        self.recorder = None;
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A port nobody listens on right now (socat needs a number).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn wait_connectable(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr} after {START_TIMEOUT:?}"))
}

/// `VmRSS` of `pid` and every descendant, in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let own = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    own + children(pid).into_iter().map(tree_rss_kib).sum::<u64>()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn remove(dir: &Path, files: &[(String, u64)]) {
    for (name, _) in files {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// The files directly in `dir` (both stores keep casts flat), with sizes.
fn list_files(dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if let (Ok(meta), Some(name)) = (e.metadata(), e.file_name().to_str()) {
            if meta.is_file() {
                out.push((name.to_string(), meta.len()));
            }
        }
    }
}
