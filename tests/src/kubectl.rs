//! Runs the real `kubectl` against a server: piped, or under a
//! pseudo-terminal.
//!
//! Each [`Kubectl`] has its own temporary directory holding a kubeconfig
//! for the server (plain `http://`, no credentials), kubectl's cache and
//! `HOME`, so runs never share state. Every wait is bounded: a stuck
//! kubectl fails the test with what it printed, it never hangs it.
//!
//! The tty tests drive kubectl through `tests/scripts/pty_run.py` (the
//! workspace forbids the `unsafe` that openpty/ioctl would need):
//! [`Kubectl::spawn_pty`] gives a [`PtySession`] to type into, resize and
//! read from.

use std::ffi::OsStr;

pub use crate::scratch::TempDir;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest a piped kubectl run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest [`PtySession::expect`] waits for its text.
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The streaming protocol kubectl is told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// kubectl's default since 1.30 (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true`).
    WebSocket,
    /// `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`.
    Spdy,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::WebSocket, Transport::Spdy];

    /// What `KUBECTL_REMOTE_COMMAND_WEBSOCKETS` is set to for this transport.
    pub fn env_value(self) -> &'static str {
        match self {
            Transport::WebSocket => "true",
            Transport::Spdy => "false",
        }
    }
}

/// `kubectl` on the PATH, if any.
pub fn find_kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
}

/// `kubectl` on the PATH; without one, a test skips loudly (returns `None`)
/// — or fails, when the `CI` environment variable is set.
pub fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(path) = find_kubectl() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: kubectl is not on the PATH and CI is set; run tests/install-deps.sh");
    }
    eprintln!(
        "\n************************************************************\n\
         SKIPPED {test}: kubectl is not on the PATH.\n\
         Install it (tests/install-deps.sh) to run the real-kubectl tests.\n\
         ************************************************************\n"
    );
    None
}

/// What a piped kubectl run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubectlOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl KubectlOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl std::fmt::Display for KubectlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

/// The real kubectl, configured for one server.
#[derive(Debug)]
pub struct Kubectl {
    program: PathBuf,
    dir: TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl (`program`) with a fresh kubeconfig for `server`
    /// (`http://host:port`), namespace `default`.
    pub fn new(program: PathBuf, server: &str) -> Kubectl {
        let dir = TempDir::new("kubecast-kubectl").expect("create a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        let config = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kubecast-test\n  cluster:\n    server: {server}\n\
             contexts:\n\
             - name: kubecast-test\n  context:\n    cluster: kubecast-test\n    user: kubecast-test\n    namespace: default\n\
             current-context: kubecast-test\n\
             users:\n\
             - name: kubecast-test\n  user: {{}}\n"
        );
        std::fs::write(&kubeconfig, config).expect("write the kubeconfig");
        Kubectl {
            program,
            dir,
            kubeconfig,
        }
    }

    /// kubectl for `server`, or `None` (see [`kubectl_or_skip`]).
    pub fn for_server(test: &str, server: &str) -> Option<Kubectl> {
        kubectl_or_skip(test).map(|program| Kubectl::new(program, server))
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The environment and global flags every run gets.
    fn configure(&self, command: &mut Command, transport: Transport) {
        command
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", transport.env_value())
            .kill_on_drop(true);
    }

    fn global_args(&self) -> Vec<String> {
        vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--cache-dir={}", self.dir.path().join("cache").display()),
        ]
    }

    /// Runs `kubectl ARGS` with `stdin` piped in (or no stdin), waits at most
    /// [`RUN_TIMEOUT`], and returns what it printed.
    pub async fn run<S: AsRef<OsStr>>(
        &self,
        transport: Transport,
        args: &[S],
        stdin: Option<&[u8]>,
    ) -> KubectlOutput {
        let mut command = Command::new(&self.program);
        self.configure(&mut command, transport);
        command
            .args(self.global_args())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn kubectl");
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let bytes = bytes.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                // Dropping the pipe is stdin's end of file.
            });
        }
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) => KubectlOutput {
                code: output.status.code(),
                stdout: output.stdout,
                stderr: output.stderr,
            },
            Ok(Err(e)) => panic!("kubectl {shown:?} ({transport:?}): {e}"),
            Err(_) => {
                panic!("kubectl {shown:?} ({transport:?}) still running after {RUN_TIMEOUT:?}")
            }
        }
    }

    /// Starts `kubectl ARGS` under a `cols`×`rows` pseudo-terminal.
    pub async fn spawn_pty<S: AsRef<OsStr>>(
        &self,
        transport: Transport,
        args: &[S],
        cols: u16,
        rows: u16,
    ) -> PtySession {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pty_run.py");
        let mut command = Command::new("python3");
        self.configure(&mut command, transport);
        command
            .arg(script)
            .arg(cols.to_string())
            .arg(rows.to_string())
            .arg(RUN_TIMEOUT.as_secs().to_string())
            .arg("--")
            .arg(&self.program)
            .args(self.global_args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("spawn python3 tests/scripts/pty_run.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let diagnostics = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let diagnostics = diagnostics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut d) = diagnostics.lock() {
                        d.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        PtySession {
            child,
            stdin: Some(stdin),
            stdout,
            transcript: Vec::new(),
            seen: 0,
            diagnostics,
        }
    }
}

/// kubectl running under a pseudo-terminal.
#[derive(Debug)]
pub struct PtySession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    transcript: Vec<u8>,
    /// How far [`PtySession::expect`] has matched.
    seen: usize,
    diagnostics: Arc<Mutex<Vec<u8>>>,
}

/// How a pty session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyOutput {
    pub code: Option<i32>,
    /// Everything kubectl wrote to the terminal (stdout and stderr).
    pub transcript: Vec<u8>,
}

impl PtySession {
    /// Everything the terminal showed so far.
    pub fn transcript(&self) -> &[u8] {
        &self.transcript
    }

    fn explain(&self) -> String {
        let diagnostics = self
            .diagnostics
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        format!(
            "terminal so far: {:?}\npty_run.py stderr: {}",
            String::from_utf8_lossy(&self.transcript),
            String::from_utf8_lossy(&diagnostics)
        )
    }

    /// Waits (at most [`EXPECT_TIMEOUT`]) until the terminal shows `needle`
    /// after the previous match; returns the text up to and including it.
    pub async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        let needle_bytes = needle.as_bytes();
        loop {
            let unseen = &self.transcript[self.seen..];
            if let Some(at) = unseen
                .windows(needle_bytes.len().max(1))
                .position(|w| w == needle_bytes)
            {
                let end = self.seen + at + needle_bytes.len();
                let text = String::from_utf8_lossy(&self.transcript[self.seen..end]).into_owned();
                self.seen = end;
                return text;
            }
            let mut buf = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stdout.read(&mut buf)).await {
                Ok(Ok(0)) => panic!(
                    "kubectl's terminal closed before showing {needle:?}\n{}",
                    self.explain()
                ),
                Ok(Ok(n)) => self.transcript.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("reading kubectl's terminal: {e}\n{}", self.explain()),
                Err(_) => panic!(
                    "kubectl's terminal did not show {needle:?} within {EXPECT_TIMEOUT:?}\n{}",
                    self.explain()
                ),
            }
        }
    }

    async fn instruct(&mut self, line: String) {
        let explain = self.explain();
        let stdin = self.stdin.as_mut().expect("the session is still open");
        if let Err(e) = stdin.write_all(line.as_bytes()).await {
            panic!("instructing pty_run.py: {e}\n{explain}");
        }
    }

    /// Types `bytes` into the terminal at once.
    pub async fn send(&mut self, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.instruct(format!("d {hex}\n")).await;
    }

    /// Types `text` one character at a time, waiting for each to be echoed
    /// before the next — a person typing, one stdin message per key.
    /// (`\r` is typed but its echo is not awaited.)
    pub async fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            let mut buf = [0u8; 4];
            self.send(c.encode_utf8(&mut buf).as_bytes()).await;
            if c != '\r' {
                self.expect(c.encode_utf8(&mut buf)).await;
            }
        }
    }

    /// Resizes the terminal; kubectl gets SIGWINCH.
    pub async fn resize(&mut self, cols: u16, rows: u16) {
        self.instruct(format!("r {cols} {rows}\n")).await;
    }

    /// Waits (at most [`crate::kubectl::RUN_TIMEOUT`]) for kubectl to exit.
    pub async fn wait(mut self) -> PtyOutput {
        self.stdin = None;
        let read_rest = async {
            let mut rest = Vec::new();
            let _ = self.stdout.read_to_end(&mut rest).await;
            rest
        };
        let Ok(rest) = tokio::time::timeout(RUN_TIMEOUT, read_rest).await else {
            panic!(
                "kubectl under a pty still running after {RUN_TIMEOUT:?}\n{}",
                self.explain()
            );
        };
        self.transcript.extend_from_slice(&rest);
        let status = match tokio::time::timeout(RUN_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            _ => panic!("pty_run.py did not exit\n{}", self.explain()),
        };
        PtyOutput {
            code: status.code(),
            transcript: self.transcript,
        }
    }
}
