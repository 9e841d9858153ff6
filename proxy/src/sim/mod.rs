//! A faithful imitation of kube-apiserver's exec/attach endpoints.
//!
//! [`TestUpstream`] serves plain HTTP on a loopback port: what `kubectl exec`
//! and `kubectl attach` ask before streaming (`/version`, discovery, the
//! Pod), and the exec/attach upgrade over WebSocket (the channel protocols
//! `v5.channel.k8s.io`, `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`,
//! `base64.channel.k8s.io`, `channel.k8s.io`) and over SPDY/3.1
//! (remotecommand v4, v3, v2 and `channel.k8s.io`, like the kubelet). The
//! command runs in a scripted [`container`].
//!
//! Pods are a live table (`pods.rs`): listed (with a name field selector),
//! watched, created and deleted, so `kubectl run -i/-it [--rm]` works end to
//! end; a created pod with `restartPolicy: Never` terminates with its main
//! process's exit code. Pod logs are not served, so when an attached
//! process fails `kubectl run` reports the exit code and then fails to fall
//! back to the logs, where a real cluster would print them.
//!
//! The handle records every request and every session (negotiated protocol,
//! stdin received, resizes, exit) so tests can assert what the server saw.
//!
//! It also answers `authentication.k8s.io/v1` TokenReviews (`POST
//! /apis/authentication.k8s.io/v1/tokenreviews`) from a token table, or
//! refuses them as RBAC would ([`TokenReviews`],
//! [`TestUpstream::set_token_reviews`]).
//!
//! One simplification: `kubectl attach` gets a fresh instance of the
//! container's main process (`ContainerSpec::main`) per session rather than
//! a process shared by every attachment.
//!
//! ```no_run
//! # async fn demo() {
//! let upstream = kubecast::sim::TestUpstream::start().await;
//! println!("point a kubeconfig at {}", upstream.url());
//! # }
//! ```

pub mod container;
mod http;
mod json;
mod pods;
mod session;
mod spdy;
mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use container::{bigout_bytes, TermSize, BIGOUT_CHUNK};

/// How long a session may wait for the client's streams (SPDY).
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a tty session waits for the client's first terminal size before
/// it starts the process, so the scripted shell always knows its size (a
/// real runtime starts at once and learns the size a moment later; kubectl
/// sends it right after the streams are set up).
pub(crate) const FIRST_SIZE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one exec/attach session may last before the upstream ends it.
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the upstream keeps reading after it has sent everything, so the
/// client can read the end of the stream before the socket goes away.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// One container of a [`PodSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The main process, which `kubectl attach` attaches to.
    pub main: Vec<String>,
    /// `spec.containers[].stdin`: kubectl attach -i needs it.
    pub stdin: bool,
    /// `spec.containers[].tty`: kubectl attach -t needs it.
    pub tty: bool,
}

impl ContainerSpec {
    /// A container named `name` whose main process is `main`.
    pub fn new(name: &str, main: &[&str], tty: bool) -> Self {
        ContainerSpec {
            name: name.to_string(),
            image: "registry.example/kubecast/scripted:1".to_string(),
            main: main.iter().map(|s| s.to_string()).collect(),
            stdin: true,
            tty,
        }
    }
}

/// A pod the upstream knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    /// `status.phase`; kubectl refuses to exec into a pod that is not `Running`.
    pub phase: String,
    /// `spec.restartPolicy`: with `Never` (and `OnFailure` after a failure)
    /// the pod terminates when its main process, run by an attach, exits.
    pub restart_policy: String,
    /// The exit code of a terminated pod's container.
    pub exit_code: Option<u8>,
    pub containers: Vec<ContainerSpec>,
}

impl PodSpec {
    /// A running pod.
    pub fn new(namespace: &str, name: &str, containers: Vec<ContainerSpec>) -> Self {
        PodSpec {
            namespace: namespace.to_string(),
            name: name.to_string(),
            phase: "Running".to_string(),
            restart_policy: "Always".to_string(),
            exit_code: None,
            containers,
        }
    }
}

/// What the upstream serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub pods: Vec<PodSpec>,
    /// `gitVersion` reported by `/version`.
    pub git_version: String,
}

impl Default for UpstreamConfig {
    /// Namespace `default`: pod `demo` (container `main`, tty, main process
    /// `sh`) and pod `worker` (container `main`, no tty, main process `cat`).
    fn default() -> Self {
        UpstreamConfig {
            pods: vec![
                PodSpec::new(
                    "default",
                    "demo",
                    vec![ContainerSpec::new("main", &["sh"], true)],
                ),
                PodSpec::new(
                    "default",
                    "worker",
                    vec![ContainerSpec::new("main", &["cat"], false)],
                ),
            ],
            git_version: "v1.32.4".to_string(),
        }
    }
}

/// exec or attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subresource {
    Exec,
    Attach,
}

/// The protocol a session negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Negotiated {
    /// WebSocket with this subprotocol (`""` when the client offered none).
    WebSocket(String),
    /// SPDY/3.1 with this `X-Stream-Protocol-Version`.
    Spdy(String),
}

/// A user the upstream's authenticator knows (`status.user` of a
/// TokenReview).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl ReviewedUser {
    pub fn new(username: &str, uid: &str, groups: &[&str]) -> Self {
        ReviewedUser {
            username: username.to_string(),
            uid: uid.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// How the upstream answers TokenReviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReviews {
    /// `201 Created` with `status.authenticated` and `status.user` for the
    /// tokens in the table, `status.user: {}` (not authenticated) for any
    /// other token.
    Table(Vec<(String, ReviewedUser)>),
    /// `403 Forbidden`, as for a caller without `create` on `tokenreviews`
    /// (the `system:auth-delegator` ClusterRole grants it); `caller` is the
    /// user the refusal names (who the API server took the reviewer for).
    Forbidden { caller: String },
}

impl Default for TokenReviews {
    /// An empty table: every token is unknown.
    fn default() -> Self {
        TokenReviews::Table(Vec::new())
    }
}

/// One HTTP request the upstream served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The response status.
    pub status: u16,
    /// The request headers, in order (names lowercase), so tests can check
    /// what a proxy forwarded (credentials, impersonation).
    pub headers: Vec<(String, String)>,
}

/// How a session ended, as the upstream reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionExit {
    /// The process exited with this code (0 = Success Status).
    Code(u8),
    /// It failed to start (InternalError Status).
    StartFailed(String),
    /// The client went away before the process ended.
    ClientGone,
    /// The session outlived its time limit (two minutes).
    TimedOut,
}

/// Everything the upstream saw of one exec/attach session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub subresource: Subresource,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The command run: the exec command, or the container's main process.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// The versions the client offered, in its order.
    pub offered: Vec<String>,
    pub negotiated: Negotiated,
    /// SPDY stream types in the order the client created them.
    pub streams: Vec<String>,
    /// Every stdin byte received.
    pub stdin_bytes: Vec<u8>,
    /// The client closed stdin (SPDY FIN, v5 close signal).
    pub stdin_closed: bool,
    /// Terminal sizes received, in order.
    pub resizes: Vec<TermSize>,
    /// Pings answered.
    pub pings: u32,
    pub exit: Option<SessionExit>,
    /// The session is over (the upstream sent its last byte).
    pub finished: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: UpstreamConfig,
    pub(crate) token_reviews: Mutex<TokenReviews>,
    /// The live pods (`config.pods` at the start).
    pub(crate) pods: Arc<pods::Pods>,
    requests: Mutex<Vec<RequestRecord>>,
    sessions: Mutex<Vec<SessionRecord>>,
    finished: watch::Sender<usize>,
    tasks: Mutex<JoinSet<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub(crate) fn token_reviews(&self) -> TokenReviews {
        lock(&self.token_reviews).clone()
    }

    pub(crate) fn log_request(&self, record: RequestRecord) {
        lock(&self.requests).push(record);
    }

    /// Registers a session; the returned handle updates its record.
    pub(crate) fn new_session(self: &Arc<Self>, record: SessionRecord) -> SessionHandle {
        let mut sessions = lock(&self.sessions);
        sessions.push(record);
        SessionHandle {
            state: self.clone(),
            index: sessions.len() - 1,
        }
    }

    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        // Reap what has finished so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

/// Updates one [`SessionRecord`].
#[derive(Debug)]
pub(crate) struct SessionHandle {
    state: Arc<State>,
    index: usize,
}

impl SessionHandle {
    pub(crate) fn update(&self, f: impl FnOnce(&mut SessionRecord)) {
        if let Some(record) = lock(&self.state.sessions).get_mut(self.index) {
            f(record);
        }
    }

    /// The process ended: an attached main process ending terminates a
    /// pod that does not restart it (what `kubectl run -i` waits for).
    pub(crate) fn process_exited(&self, exit: &container::Exit) {
        let container::Exit::Code(code) = exit else {
            return;
        };
        let mut attached = None;
        self.update(|r| {
            if r.subresource == Subresource::Attach {
                attached = Some((r.namespace.clone(), r.pod.clone()));
            }
        });
        if let Some((namespace, pod)) = attached {
            self.state.pods.main_exited(&namespace, &pod, *code);
        }
    }

    /// Marks the session finished (once) and wakes waiters.
    pub(crate) fn finish(&self, exit: SessionExit) {
        let mut newly = false;
        self.update(|r| {
            if !r.finished {
                r.finished = true;
                r.exit.get_or_insert(exit);
                newly = true;
            }
        });
        if newly {
            self.state.finished.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        // A handler that ends without saying how (a panic, a cancelled task)
        // still ends its session.
        self.finish(SessionExit::ClientGone);
    }
}

/// The running test upstream. Shuts down when dropped.
#[derive(Debug)]
pub struct TestUpstream {
    addr: SocketAddr,
    state: Arc<State>,
}

impl TestUpstream {
    /// The pods as they are now (created, terminated, deleted ones
    /// included).
    pub fn pods(&self) -> Vec<PodSpec> {
        self.state.pods.all()
    }

    /// Starts the default upstream ([`UpstreamConfig::default`]) on
    /// `127.0.0.1:0`.
    pub async fn start() -> TestUpstream {
        Self::start_with(UpstreamConfig::default()).await
    }

    /// Starts an upstream with `config` on `127.0.0.1:0`.
    pub async fn start_with(config: UpstreamConfig) -> TestUpstream {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(addr, config)
            .await
            .unwrap_or_else(|e| panic!("test upstream cannot listen on {addr}: {e}"))
    }

    /// Starts an upstream with `config` listening on `addr`.
    pub async fn bind(addr: SocketAddr, config: UpstreamConfig) -> std::io::Result<TestUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            pods: Arc::new(pods::Pods::new(&config.pods)),
            config,
            token_reviews: Mutex::default(),
            requests: Mutex::default(),
            sessions: Mutex::default(),
            finished: watch::channel(0).0,
            tasks: Mutex::new(JoinSet::new()),
        });
        let accept_state = state.clone();
        state.spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                // Small writes (echoed keys, prompts) go out at once, as from
                // the real servers.
                let _ = stream.set_nodelay(true);
                let conn_state = accept_state.clone();
                accept_state.spawn(http::serve_connection(stream, conn_state));
            }
        });
        Ok(TestUpstream { addr, state })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How TokenReviews are answered from now on (default: an empty table).
    pub fn set_token_reviews(&self, reviews: TokenReviews) {
        *lock(&self.state.token_reviews) = reviews;
    }

    /// Every HTTP request served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.requests).clone()
    }

    /// Every exec/attach session so far (finished or not).
    pub fn sessions(&self) -> Vec<SessionRecord> {
        lock(&self.state.sessions).clone()
    }

    /// Waits until `n` sessions have finished, at most `timeout`; panics
    /// (with what it saw) when they do not.
    pub async fn wait_finished(&self, n: usize, timeout: Duration) -> Vec<SessionRecord> {
        let mut rx = self.state.finished.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|&done| done >= n)).await;
        if !matches!(waited, Ok(Ok(_))) {
            panic!(
                "test upstream: {n} finished sessions expected within {timeout:?}; sessions: {:#?}",
                self.sessions()
            );
        }
        self.sessions()
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        lock(&self.state.tasks).abort_all();
    }
}
