//! The real `kubectl` through the driver: a small TCP relay in front of the
//! test upstream drives every connection with a `Session` and a `FileSink`.
//! kubectl's output and exit code must be what it gives without the relay,
//! and the exec connection's cast file must hold the output and the exit
//! marker. Connections that are not upgrades (kubectl's GETs, kept alive)
//! are forwarded too and leave no file.
//!
//! Every test runs once per transport: WebSocket (kubectl's default) and
//! SPDY (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`). Without kubectl the
//! tests skip loudly, or fail when `CI` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubecast_core::session::{Session, SessionConfig, SessionMeta};
use kubecast_core::Side;
use kubecast_tests::fixtures::{stdin_sample, tty_dialog};
use kubecast_tests::kubectl::{Kubectl, TempDir, Transport};
use kubecast_tests::upstream::{SessionExit, TestUpstream};
use kubecast_tokio::{drive, DriveError, DriveErrorKind, DriveOptions, DriveSummary, FileSink};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How one relayed connection ended.
#[derive(Debug)]
struct Outcome {
    result: Result<DriveSummary, DriveError>,
    /// The request line the session parsed, if it was an upgrade.
    request: Option<String>,
    /// Where the `FileSink` put the cast, if anything was recorded.
    cast: Option<PathBuf>,
}

/// kubectl ⇄ relay (one `drive` per connection) ⇄ test upstream.
struct Relay {
    addr: SocketAddr,
    dir: TempDir,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    /// (connections accepted, connections ended)
    counts: watch::Receiver<(usize, usize)>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = TempDir::new("kubecast-tokio-relay").unwrap();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (counts_tx, counts) = watch::channel((0, 0));
        let counts_tx = Arc::new(counts_tx);
        let (cast_dir, kept) = (dir.path().to_path_buf(), outcomes.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                counts_tx.send_modify(|(accepted, _)| *accepted += 1);
                let (cast_dir, kept, counts_tx) =
                    (cast_dir.clone(), kept.clone(), counts_tx.clone());
                tokio::spawn(async move {
                    let outcome = relay(client, upstream, cast_dir, n).await;
                    kept.lock().unwrap().push(outcome);
                    counts_tx.send_modify(|(_, ended)| *ended += 1);
                });
            }
        });
        Relay {
            addr,
            dir,
            outcomes,
            counts,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until every accepted connection has ended (kubectl has exited,
    /// so its kept-alive connections close too) and returns the outcomes.
    async fn settle(&self) -> Vec<Outcome> {
        let mut counts = self.counts.clone();
        let settled = tokio::time::timeout(
            Duration::from_secs(30),
            counts.wait_for(|(accepted, ended)| *accepted > 0 && accepted == ended),
        )
        .await;
        assert!(
            matches!(settled, Ok(Ok(_))),
            "relayed connections still open: {:?}",
            *self.counts.borrow()
        );
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, dir: PathBuf, n: usize) -> Outcome {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(e) => panic!("relay cannot reach the test upstream: {e}"),
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let meta = SessionMeta {
        user: Some("relay-test".into()),
        session_id: Some(format!("conn-{n}")),
        ..Default::default()
    };
    let mut session = Session::new(SessionConfig::default(), meta);
    let mut sink = FileSink::new(dir, &format!("conn-{n}"));
    let options = DriveOptions {
        idle_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let result = drive(&mut session, client, server, &mut sink, &options).await;
    Outcome {
        result,
        request: session
            .request()
            .map(|r| format!("{:?} {:?}", r.resource, r.command)),
        cast: sink.path().map(|p| p.to_path_buf()),
    }
}

async fn setup(test: &str, transport: Transport) -> Option<(TestUpstream, Relay, Kubectl)> {
    let upstream = TestUpstream::start().await;
    let relay = Relay::start(upstream.addr()).await;
    let kubectl = Kubectl::for_server(&format!("{test} ({transport:?})"), &relay.url())?;
    Some((upstream, relay, kubectl))
}

/// The one recorded connection of a run: its summary and cast lines. Also
/// checks that every other connection was forwarded unrecorded and that no
/// temporary file is left behind.
async fn the_recording(relay: &Relay) -> (DriveSummary, Vec<String>) {
    let outcomes = relay.settle().await;
    let mut recorded = Vec::new();
    for outcome in outcomes {
        let summary = ended_normally(outcome.result);
        match &outcome.cast {
            Some(path) => recorded.push((path.clone(), summary)),
            None => {
                assert_eq!(summary.cast_bytes, 0, "{:?}", outcome.request);
                assert!(summary.recording.is_none());
            }
        }
    }
    assert_eq!(recorded.len(), 1, "one exec connection: {recorded:#?}");
    let (path, summary) = recorded.pop().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(relay.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [path.file_name().unwrap().to_string_lossy().into_owned()],
        "one complete .cast and no temporary file"
    );
    assert!(
        path.to_string_lossy().ends_with(".cast") && !path.to_string_lossy().contains("incomplete")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(summary.cast_bytes, text.len() as u64);
    (summary, text.lines().map(str::to_string).collect())
}

/// The summary of a connection that ended the way kubectl ends them: both
/// sides closed, or kubectl reset its connection on exit (it closes a
/// socket with bytes it never read — the upstream's last frames — and the
/// kernel answers with RST instead of FIN). The driver reports the reset;
/// everything before it was forwarded and recorded.
fn ended_normally(result: Result<DriveSummary, DriveError>) -> DriveSummary {
    match result {
        Ok(summary) => summary,
        Err(DriveError {
            kind:
                DriveErrorKind::Read {
                    side: Side::Client,
                    source,
                },
            summary,
        }) if source.kind() == std::io::ErrorKind::ConnectionReset => *summary,
        Err(e) => panic!("a relayed connection failed: {e}"),
    }
}

/// Checks the cast's last line: the exit marker, and that decoding never
/// failed. SPDY kubectl writes a frame in several `write` calls and may exit
/// between them (a cut `RST_STREAM` after the exit status); the core knows
/// that is harmless and ends the cast as usual.
fn assert_ends_with_exit(lines: &[String], code: u8, summary: &DriveSummary) {
    assert_eq!(
        summary
            .recording
            .as_ref()
            .and_then(|r| r.exit.as_ref())
            .map(|e| e.code()),
        Some(code),
        "{summary:?}"
    );
    assert_eq!(summary.decode_error, None, "{summary:?}");
    let last = lines.last().unwrap();
    assert!(
        last.ends_with(&format!(r#", "m", "exit {code}"]"#)),
        "the cast should end with the exit marker: {lines:#?}"
    );
}

fn header(lines: &[String]) -> serde_json::Value {
    serde_json::from_str(&lines[0]).expect("a JSON cast header")
}

fn protocol(transport: Transport) -> &'static str {
    match transport {
        Transport::WebSocket => "websocket",
        Transport::Spdy => "spdy",
    }
}

async fn echo_is_relayed_and_recorded(transport: Transport) {
    let Some((upstream, relay, kubectl)) = setup("echo_is_relayed_and_recorded", transport).await
    else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hello"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str(), out.stderr_str()),
        (Some(0), "hello\n".into(), "".into()),
        "{out}"
    );
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions[0].exit, Some(SessionExit::Code(0)));

    let (summary, lines) = the_recording(&relay).await;
    let header = header(&lines);
    assert_eq!(header["kubernetes"]["pod"], "demo");
    assert_eq!(header["kubernetes"]["protocol"], protocol(transport));
    assert_eq!(header["kubernetes"]["user"], "relay-test");
    assert_eq!(header["command"], "echo hello");
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "o", "hello\n"]"#)),
        "{lines:#?}"
    );
    assert_ends_with_exit(&lines, 0, &summary);
    assert!(summary.upstream_eof, "{summary:?}");
}

async fn a_failing_command_keeps_its_exit_code(transport: Transport) {
    let Some((_upstream, relay, kubectl)) =
        setup("a_failing_command_keeps_its_exit_code", transport).await
    else {
        return;
    };
    let args = ["exec", "demo", "--", "sh", "-c", "stderr oops; exit 3"];
    let out = kubectl.run(transport, &args, None).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout_str(), "");
    assert_eq!(
        out.stderr_str(),
        "oops\ncommand terminated with exit code 3\n"
    );
    let (summary, lines) = the_recording(&relay).await;
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "o", "oops\n"]"#)),
        "stderr is recorded: {lines:#?}"
    );
    assert_ends_with_exit(&lines, 3, &summary);
}

async fn piped_stdin_round_trips_byte_exact(transport: Transport) {
    let Some((upstream, relay, kubectl)) =
        setup("piped_stdin_round_trips_byte_exact", transport).await
    else {
        return;
    };
    // More than kubectl's 32 KiB stdin chunk and the driver's 64 KiB
    // buffer, every byte value, and UTF-8.
    let input = stdin_sample(150_000);
    let out = kubectl
        .run(
            transport,
            &["exec", "-i", "demo", "--", "cat"],
            Some(&input),
        )
        .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout == input, "stdout differs from stdin");
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert!(
        sessions[0].stdin_bytes == input,
        "the upstream got stdin intact"
    );

    let (summary, lines) = the_recording(&relay).await;
    let recording = summary.recording.as_ref().unwrap();
    assert_eq!(recording.stdin_bytes, input.len() as u64);
    assert_eq!(recording.stdout_bytes, input.len() as u64);
    assert_ends_with_exit(&lines, 0, &summary);
}

async fn a_tty_session_records_its_sizes(transport: Transport) {
    let Some((_upstream, relay, kubectl)) =
        setup("a_tty_session_records_its_sizes", transport).await
    else {
        return;
    };
    let tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty_dialog(tty).await;

    let (summary, lines) = the_recording(&relay).await;
    let header = header(&lines);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(header["kubernetes"]["tty"], true);
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "r", "100x30"]"#)),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("hello")), "{lines:#?}");
    assert_ends_with_exit(&lines, 0, &summary);
}

kubecast_tests::over_both_transports!(
    echo_is_relayed_and_recorded,
    a_failing_command_keeps_its_exit_code,
    piped_stdin_round_trips_byte_exact,
    a_tty_session_records_its_sizes,
);
