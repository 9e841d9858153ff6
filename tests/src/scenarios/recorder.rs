//! Recorded sessions against the real `kubecast recorder`, for any
//! [`Runtime`]: complete over v2 and v1, failover, TLS, the ack window
//! (fail-closed and fail-open), and the recorder killed mid-upload.

use super::script::*;
use super::{
    eventually, socket_pair, wait_log, Collect, EndSignal, Peer, RecordJob, Recorded, RecorderPeer,
    Runtime, STEP,
};
use kubecast_core::drive::{DriveErrorKind, DriveOptions, UploadEvent, UploadTls};
use kubecast_core::recording::Policy;
use kubecast_core::upload::{
    AttemptError, AttemptRecord, Budget, FailureReason, Protocol, Stage, Then, UploadConfig,
    UploadFailure,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The ack window of the scenarios that let it expire.
pub const WINDOW: Duration = Duration::from_millis(500);

/// One recorded session being driven: the client's and the upstream's
/// ends, the sink, and the adapter's result once it is done.
#[derive(Debug)]
pub struct Harness {
    pub client: Peer,
    pub upstream: Peer,
    pub sink: Collect,
    driven: mpsc::Receiver<Recorded>,
}

/// A job for [`Runtime::record`] and what the scenario keeps of it.
struct Prepared {
    job: RecordJob,
    harness: Harness,
    sent: mpsc::Sender<Recorded>,
    open_result: mpsc::Receiver<Result<(), UploadFailure>>,
}

impl Prepared {
    fn new(
        recording: kubecast_core::recording::Recording,
        tls: UploadTls,
        wait_open: bool,
        end: Option<EndSignal>,
    ) -> Prepared {
        let (client, client_driver) = socket_pair();
        let (upstream, upstream_driver) = socket_pair();
        let sink = Collect::default();
        let (opened, open_result) = mpsc::channel();
        let (sent, driven) = mpsc::channel();
        let job = RecordJob {
            recording,
            tls,
            wait_open,
            opened,
            client: client_driver,
            upstream: upstream_driver,
            options: DriveOptions::default(),
            sink: sink.clone(),
            end,
        };
        let harness = Harness {
            client,
            upstream,
            sink,
            driven,
        };
        Prepared {
            job,
            harness,
            sent,
            open_result,
        }
    }
}

fn opened(
    open_result: &mpsc::Receiver<Result<(), UploadFailure>>,
) -> Result<(), Box<UploadFailure>> {
    open_result
        .recv_timeout(STEP)
        .expect("the upload opens or fails in time")
        .map_err(Box::new)
}

impl Harness {
    /// Starts driving `recording` on runtime `R`. With `wait_open`, waits
    /// for the upload to open first and returns its failure if it did not.
    pub fn start<R: Runtime>(
        recording: kubecast_core::recording::Recording,
        tls: UploadTls,
        wait_open: bool,
    ) -> Result<Harness, Box<UploadFailure>> {
        Harness::start_ended_by::<R>(recording, tls, wait_open, None)
    }

    /// [`Harness::start`], the session ended with a message when `end`
    /// says so (`drive_recording_until_ended`).
    pub fn start_ended_by<R: Runtime>(
        recording: kubecast_core::recording::Recording,
        tls: UploadTls,
        wait_open: bool,
        end: Option<EndSignal>,
    ) -> Result<Harness, Box<UploadFailure>> {
        let Prepared {
            job,
            harness,
            sent,
            open_result,
        } = Prepared::new(recording, tls, wait_open, end);
        std::thread::spawn(move || {
            let _ = sent.send(R::record(job));
        });
        if wait_open {
            opened(&open_result)?;
        }
        Ok(harness)
    }

    /// Several sessions driven together on one executor of runtime `R`,
    /// each opened (its upload open) before this returns.
    pub fn start_together<R: Runtime>(
        recordings: Vec<kubecast_core::recording::Recording>,
        tls: &UploadTls,
    ) -> Vec<Harness> {
        let prepared: Vec<Prepared> = recordings
            .into_iter()
            .map(|r| Prepared::new(r, tls.clone(), true, None))
            .collect();
        let mut jobs = Vec::new();
        let mut senders = Vec::new();
        let mut harnesses = Vec::new();
        let mut open_results = Vec::new();
        for p in prepared {
            jobs.push(p.job);
            senders.push(p.sent);
            harnesses.push(p.harness);
            open_results.push(p.open_result);
        }
        std::thread::spawn(move || {
            for (sent, recorded) in senders.into_iter().zip(R::record_together(jobs)) {
                let _ = sent.send(recorded);
            }
        });
        for open_result in &open_results {
            opened(open_result).expect("a recorder accepts the upload");
        }
        harnesses
    }

    /// Waits for the adapter to finish (with sessions started together:
    /// for all of them to finish).
    pub fn join(self) -> (Recorded, super::Received) {
        let recorded = self.driven.recv().expect("the adapter thread");
        (recorded, self.sink.received())
    }

    /// Request, 101 and a first output (`before`), all forwarded.
    pub fn open_session(&mut self) {
        self.client.write(REQUEST);
        assert_eq!(self.upstream.read_n(REQUEST.len()), REQUEST);
        let mut down = SWITCHED.to_vec();
        down.extend(from_upstream(1, b"before\r\n"));
        self.upstream.write(&down);
        assert_eq!(self.client.read_n(down.len()), down);
    }

    /// Output, exit and close both ways from an open session, checking
    /// that every byte arrives unchanged.
    pub fn finish_session(&mut self, output: &[u8]) {
        let down = from_upstream(1, output);
        self.upstream.write(&down);
        assert_eq!(self.client.read_n(down.len()), down);
        let input = from_client(0, b"exit\n");
        self.client.write(&input);
        assert_eq!(self.upstream.read_n(input.len()), input);
        let down = from_upstream(3, SUCCESS);
        self.upstream.write(&down);
        self.upstream.shutdown();
        assert_eq!(self.client.read_to_eof(), down);
        let close = client_close();
        self.client.write(&close);
        self.client.shutdown();
        assert_eq!(self.upstream.read_to_eof(), close);
    }
}

fn started(events: &[UploadEvent]) -> Option<&UploadEvent> {
    events
        .iter()
        .find(|e| matches!(e, UploadEvent::Started { .. }))
}

fn started_with(events: &[UploadEvent], protocol: Protocol) -> bool {
    matches!(started(events), Some(UploadEvent::Started { protocol: p, .. }) if *p == protocol)
}

/// Waits for `recorder` to store exactly one complete recording.
fn stored(recorder: &dyn RecorderPeer) -> Vec<u8> {
    let name = eventually("a stored recording", || {
        let files = recorder.files();
        (files.len() == 1).then(|| files[0].clone())
    });
    assert!(!name.contains("_incomplete"), "{name}");
    recorder.read(&name)
}

/// Records the scripted session fail-closed to `recorders` and checks the
/// outcome: completed, the recorder's file equals the replayed cast, the
/// cast did not go to the sink. Returns the upload log.
pub fn record_to<R: Runtime>(
    recorder: &dyn RecorderPeer,
    recorders: &[String],
    tls: UploadTls,
) -> Vec<UploadEvent> {
    let recording = recording(upload_config(recorders), Policy::FailClosed);
    // Fail-closed: the recorder is there before anything goes upstream.
    let mut h = Harness::start::<R>(recording, tls, true).expect("a recorder accepts the upload");
    h.open_session();
    h.finish_session("warning: é\n".as_bytes());
    let (recorded, got) = h.join();
    let summary = recorded.result.expect("driven").expect("a clean end");
    assert!(got.finished);
    assert!(got.cast.is_empty(), "the cast goes to the recorder");
    let expected = replayed_cast(&got.capture);
    assert_eq!(summary.upload_completed, Some(expected.len() as u64));
    assert!(summary.upload_failure.is_none(), "{summary:?}");
    assert_eq!(recorded.acked, expected.len() as u64);
    let stored = stored(recorder);
    assert_eq!(
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&expected)
    );
    assert!(matches!(
        got.upload.last(),
        Some(UploadEvent::Completed { bytes }) if *bytes == expected.len() as u64
    ));
    got.upload
}

/// A session the caller ends with a message (a proxy's shutdown grace
/// period is over): kubectl gets the message as a Status on the error
/// channel, nothing more goes upstream, the recorder stores a complete cast
/// that ends with the marker, and the result is a clean end.
pub fn ended_with_a_message<R: Runtime>(recorder: &dyn RecorderPeer) {
    let recording = recording(upload_config(&[recorder.url()]), Policy::FailClosed);
    let end = EndSignal::default();
    let mut h =
        Harness::start_ended_by::<R>(recording, UploadTls::default(), true, Some(end.clone()))
            .expect("a recorder accepts the upload");
    h.open_session();
    end.end("the proxy is shutting down");
    let farewell = h.client.read_to_eof();
    // A server frame: opcode, length, then the channel — the error channel.
    assert_eq!(farewell.get(2), Some(&3), "{farewell:?}");
    let text = String::from_utf8_lossy(&farewell);
    assert!(text.contains("the proxy is shutting down"), "{text:?}");
    assert_eq!(h.upstream.read_to_eof(), b"", "nothing more goes upstream");
    let (recorded, got) = h.join();
    let summary = recorded.result.expect("driven").expect("a clean end");
    assert!(got.finished);
    let stored = stored(recorder);
    assert_eq!(summary.upload_completed, Some(stored.len() as u64));
    let cast = String::from_utf8_lossy(&stored);
    let last = cast.lines().last().unwrap_or_default();
    assert!(
        last.contains(r#""m", "kubecast: session ended: the proxy is shutting down"]"#),
        "{cast}"
    );
    assert!(cast.contains("before"), "{cast}");
}

/// A session arrives complete over v2 (h2c), with no failed attempt.
pub fn arrives_over_v2<R: Runtime>(recorder: &dyn RecorderPeer) {
    let log = record_to::<R>(recorder, &[recorder.url()], UploadTls::default());
    assert!(started_with(&log, Protocol::V2), "{log:?}");
    assert!(
        !log.iter()
            .any(|e| matches!(e, UploadEvent::AttemptFailed(_))),
        "{log:?}"
    );
    wait_log(recorder, "v2 complete", 1);
}

/// Behind a front without h2c the probe fails and v1 goes through.
pub fn arrives_over_v1_behind_an_http1_only_front<R: Runtime>(recorder: &dyn RecorderPeer) {
    let front = h1_only_front(recorder.addr());
    let log = record_to::<R>(recorder, &[format!("http://{front}")], UploadTls::default());
    let UploadEvent::AttemptFailed(probe) = &log[0] else {
        panic!("expected the failed probe first: {log:?}");
    };
    assert_eq!(
        (probe.protocol, probe.stage, probe.then),
        (Protocol::V2, Stage::Probe, Then::FallBackToV1),
        "{probe}"
    );
    assert!(started_with(&log, Protocol::V1), "{log:?}");
    wait_log(recorder, "v1 complete", 1);
}

/// A refused address is skipped for the next recorder.
pub fn fails_over_from_a_refused_recorder<R: Runtime>(recorder: &dyn RecorderPeer) {
    let dead = refused_addr();
    let log = record_to::<R>(
        recorder,
        &[format!("http://{dead}"), recorder.url()],
        UploadTls::default(),
    );
    let UploadEvent::AttemptFailed(first) = &log[0] else {
        panic!("expected the refused attempt first: {log:?}");
    };
    assert_eq!(first.recorder.port(), dead.port());
    assert_eq!(
        (first.stage, first.then),
        (Stage::Connect, Then::NextRecorder)
    );
    assert!(
        matches!(&first.error, AttemptError::Connect(m) if m.to_lowercase().contains("refused")),
        "{first}"
    );
    let Some(UploadEvent::Started { recorder: r, .. }) = started(&log) else {
        panic!("no start: {log:?}");
    };
    assert_eq!(r.port(), recorder.addr().port());
}

/// An `https://` recorder with a private CA: untrusted without it (every
/// attempt fails on the certificate), ALPN h2 and v2 with it.
pub fn tls_with_a_private_ca<R: Runtime>(recorder: &dyn RecorderPeer, ca_file: &Path) {
    let url = format!("https://localhost:{}", recorder.addr().port());
    let recording = recording(
        upload_config(std::slice::from_ref(&url)),
        Policy::FailClosed,
    );
    let Err(failure) = Harness::start::<R>(recording, UploadTls::default(), true) else {
        panic!("an untrusted certificate was accepted");
    };
    assert!(
        failure
            .attempts
            .iter()
            .all(|a| matches!(&a.error, AttemptError::Connect(m) if m.contains("certificate"))),
        "{failure}"
    );
    let tls = UploadTls::from_ca_file(ca_file).expect("the CA file");
    let log = record_to::<R>(recorder, &[url], tls);
    assert!(started_with(&log, Protocol::V2), "{log:?}");
    let line = wait_log(recorder, "v2 complete", 1);
    assert!(line[0].contains(" tls "), "{line:?}");
}

fn short_window(url: String) -> UploadConfig {
    let mut config = upload_config(&[url]);
    config.ack_window = WINDOW;
    config
}

/// An open session with a short ack window whose recorder is then stopped
/// (SIGSTOP): it acknowledges nothing from here on; one more output goes
/// through.
fn stopped_while_recording<R: Runtime>(recorder: &mut dyn RecorderPeer, policy: Policy) -> Harness {
    let recording = recording(short_window(recorder.url()), policy);
    let mut h = Harness::start::<R>(recording, UploadTls::default(), true).expect("open");
    h.open_session();
    recorder.signal("STOP");
    let down = from_upstream(1, b"while stopped\r\n");
    h.upstream.write(&down);
    assert_eq!(h.client.read_n(down.len()), down);
    h
}

/// A recorder that stops acknowledging (SIGSTOP) makes the ack window run
/// out: a fail-closed session ends — the client gets the core's last words
/// and end of file, the upstream end of file, later output goes nowhere.
pub fn ack_window_expiry_ends_a_fail_closed_session<R: Runtime>(recorder: &mut dyn RecorderPeer) {
    let mut h = stopped_while_recording::<R>(recorder, Policy::FailClosed);
    let rest = h.client.read_to_eof();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("recording was lost"), "{text:?}");
    assert!(
        text.contains("no ack frame within the ack window"),
        "{text:?}"
    );
    assert!(h.upstream.read_to_eof().is_empty());
    let _ = h.upstream.try_write(&from_upstream(1, b"LATE-OUTPUT\r\n"));
    let (recorded, got) = h.join();
    recorder.signal("CONT");
    let error = recorded
        .result
        .expect("driven")
        .expect_err("fail-closed ends the session");
    let DriveErrorKind::RecordingFailed(failure) = &error.kind else {
        panic!("{error}");
    };
    assert!(
        failure
            .attempts
            .iter()
            .any(|a| matches!(a.error, AttemptError::AckWindowExpired(w) if w == WINDOW)),
        "{failure}"
    );
    assert_eq!(error.summary.upload_failure.as_ref(), Some(&**failure));
    assert!(matches!(got.upload.last(), Some(UploadEvent::Failed(_))));
    assert!(recorded.failure.is_some());
    assert!(got.finished);
}

/// The same expiry under fail-open: reported, and the session goes on to
/// its end, forwarding everything.
pub fn ack_window_expiry_is_reported_and_a_fail_open_session_goes_on<R: Runtime>(
    recorder: &mut dyn RecorderPeer,
) {
    let mut h = stopped_while_recording::<R>(recorder, Policy::FailOpen);
    let sink = h.sink.clone();
    eventually("the upload to fail", || {
        sink.received()
            .upload
            .iter()
            .any(|e| matches!(e, UploadEvent::Failed(_)))
            .then_some(())
    });
    h.finish_session(b"LATE-OUTPUT\r\n");
    let (recorded, _) = h.join();
    recorder.signal("CONT");
    let summary = recorded
        .result
        .expect("driven")
        .expect("fail-open: a clean end");
    let failure = summary.upload_failure.expect("the loss is reported");
    assert!(
        failure
            .attempts
            .iter()
            .any(|a| matches!(a.error, AttemptError::AckWindowExpired(_))),
        "{failure}"
    );
    assert!(summary.recording.is_some(), "the session itself finished");
}

/// SIGKILL mid-upload: fail-open goes on, the upload is `Interrupted` with
/// acknowledged bytes, and a restarted recorder recovers the temporary
/// file as `_incomplete`, holding at least what was acknowledged.
pub fn a_recorder_killed_mid_upload_leaves_an_incomplete_cast<R: Runtime>(
    recorder: &mut dyn RecorderPeer,
) {
    let recording = recording(upload_config(&[recorder.url()]), Policy::FailOpen);
    let mut h = Harness::start::<R>(recording, UploadTls::default(), true).expect("open");
    h.open_session();
    eventually("the recorder to write the output", || {
        let partial = recorder.hidden().into_iter().next()?;
        String::from_utf8_lossy(&recorder.read(&partial))
            .contains("before")
            .then_some(())
    });
    // Its ack goes out within ~50 ms of the write.
    std::thread::sleep(Duration::from_millis(300));
    recorder.signal("KILL");
    std::thread::sleep(Duration::from_millis(200));
    h.finish_session(b"after the recorder died\r\n");
    let (recorded, _) = h.join();
    let summary = recorded
        .result
        .expect("driven")
        .expect("fail-open: a clean end");
    let failure = summary.upload_failure.expect("the loss is reported");
    assert!(
        matches!(failure.reason, FailureReason::Interrupted { .. }),
        "{failure}"
    );
    assert!(
        failure.acked > 0 && failure.acked <= failure.sent,
        "{failure:?}"
    );
    assert_eq!(recorder.files(), Vec::<String>::new());
    assert_eq!(recorder.hidden().len(), 1, "{:?}", recorder.hidden());
    recorder.restart();
    let name = eventually("the recovered recording", || {
        recorder.files().into_iter().next()
    });
    assert!(name.ends_with("_incomplete.cast"), "{name}");
    let kept = recorder.read(&name);
    assert!(
        kept.len() as u64 >= failure.acked,
        "{} < {failure:?}",
        kept.len()
    );
    assert!(String::from_utf8_lossy(&kept).contains("before"));
}

/// Sessions recorded together through a [`Front`] to `recorder`, opened
/// first, then each finished: all complete over v2, with no failed
/// attempt.
fn record_together<R: Runtime>(front: &Front, n: usize) {
    let recordings = (0..n)
        .map(|_| recording(upload_config(&[front.url()]), Policy::FailClosed))
        .collect();
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
    }
    for h in &mut sessions {
        h.finish_session(b"together\r\n");
    }
    for h in sessions {
        let (recorded, got) = h.join();
        let summary = recorded.result.expect("driven").expect("a clean end");
        let expected = replayed_cast(&got.capture);
        assert_eq!(summary.upload_completed, Some(expected.len() as u64));
        assert!(started_with(&got.upload, Protocol::V2), "{:?}", got.upload);
        assert!(
            !got.upload
                .iter()
                .any(|e| matches!(e, UploadEvent::AttemptFailed(_))),
            "{:?}",
            got.upload
        );
    }
}

/// Sessions uploading to one recorder together share one HTTP/2
/// connection (one stream each): its buffers and socket cost more than an
/// idle session itself.
pub fn uploads_to_one_recorder_share_a_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let front = Front::start(recorder.addr());
    record_together::<R>(&front, 3);
    wait_log(recorder, "v2 complete", 3);
    assert_eq!(front.accepted(), 1, "one connection for all three uploads");
}

/// A shared connection that breaks fails every upload on it; the next
/// uploads get a fresh connection, never the broken one.
pub fn a_broken_shared_connection_is_not_reused<R: Runtime>(recorder: &dyn RecorderPeer) {
    let front = Front::start(recorder.addr());
    let recordings = (0..2)
        .map(|_| recording(upload_config(&[front.url()]), Policy::FailOpen))
        .collect();
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
    }
    assert_eq!(front.accepted(), 1);
    front.cut();
    for h in &mut sessions {
        let sink = h.sink.clone();
        eventually("the upload to fail", || {
            sink.received()
                .upload
                .iter()
                .any(|e| matches!(e, UploadEvent::Failed(_)))
                .then_some(())
        });
        h.finish_session(b"after the cut\r\n");
    }
    for h in sessions {
        let (recorded, _) = h.join();
        let summary = recorded
            .result
            .expect("driven")
            .expect("fail-open: a clean end");
        let failure = summary.upload_failure.expect("the loss is reported");
        assert!(
            matches!(failure.reason, FailureReason::Interrupted { .. }),
            "{failure}"
        );
    }
    record_together::<R>(&front, 2);
    wait_log(recorder, "v2 complete", 2);
    assert_eq!(front.accepted(), 2, "one new connection for the next two");
}

/// An upload that fails on a shared connection which itself stays alive
/// (the recorder's side refuses its request stream while another upload
/// goes on over the same connection) fails over to a fresh connection:
/// the connection that just failed an attempt takes no new ones.
pub fn a_failed_upload_fails_over_to_a_fresh_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let refused = fail_over_beside_a_live_upload::<R>(recorder, Spoil::Refuse, |_| {});
    assert!(
        matches!(&refused.error, AttemptError::Stream(m) if m.contains("refused")),
        "{refused}"
    );
}

/// The same when the core gives the attempt up (its recorder does not
/// answer within the attempt budget) while its connection lives on: the
/// failover gets a fresh connection, not the one that left it waiting.
pub fn a_given_up_upload_fails_over_to_a_fresh_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let budget = Duration::from_secs(1);
    let stalled = fail_over_beside_a_live_upload::<R>(recorder, Spoil::Stall, |config| {
        config.attempt_budget = budget;
    });
    assert_eq!(
        stalled.error,
        AttemptError::TimedOut {
            budget: Budget::Attempt,
            limit: budget
        },
        "{stalled}"
    );
}

/// Two sessions recorded together through a front that spoils the first
/// upload (`how`) to a recorder listed twice: both complete over v2, one
/// after a failover at the start of its upload, on a new connection
/// although the other upload keeps the first one alive. Returns the failed
/// attempt.
fn fail_over_beside_a_live_upload<R: Runtime>(
    recorder: &dyn RecorderPeer,
    how: Spoil,
    configure: impl Fn(&mut UploadConfig),
) -> AttemptRecord {
    let front = Front::spoiling_the_first_upload(recorder.addr(), how);
    // The same recorder twice: the failover goes to the same address, so
    // only the pool decides whether it gets a new connection.
    let recorders = [front.url(), front.url()];
    let recordings = (0..2)
        .map(|_| {
            let mut config = upload_config(&recorders);
            configure(&mut config);
            recording(config, Policy::FailClosed)
        })
        .collect();
    // Both open: one at once, the other after the spoiled attempt and a
    // failover while the first one holds the connection open.
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
        h.finish_session(b"after the failover\r\n");
    }
    let mut failed = Vec::new();
    for h in sessions {
        let (recorded, got) = h.join();
        let summary = recorded.result.expect("driven").expect("a clean end");
        assert_eq!(
            summary.upload_completed,
            Some(replayed_cast(&got.capture).len() as u64)
        );
        assert!(started_with(&got.upload, Protocol::V2), "{:?}", got.upload);
        failed.extend(got.upload.into_iter().filter_map(|e| match e {
            UploadEvent::AttemptFailed(record) => Some(record),
            _ => None,
        }));
    }
    let [spoiled] = failed.as_slice() else {
        panic!("expected one failed attempt: {failed:?}");
    };
    assert_eq!(
        (spoiled.protocol, spoiled.stage, spoiled.then),
        (Protocol::V2, Stage::Start, Then::NextRecorder),
        "{spoiled}"
    );
    wait_log(recorder, "v2 complete", 2);
    assert_eq!(
        front.accepted(),
        2,
        "the failover must dial a new connection, not reuse the one that failed it"
    );
    spoiled.clone()
}

/// A TCP relay in front of a recorder that counts the connections it
/// accepts and can break them all at once (threads; the listener lives as
/// long as the test process).
#[derive(Debug, Clone)]
pub struct Front {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Front {
    pub fn start(target: SocketAddr) -> Front {
        Front::serve(target, None)
    }

    /// A front that spoils the first upload request it relays
    /// ([`Spoil`]) and relays everything else unchanged.
    pub fn spoiling_the_first_upload(target: SocketAddr, how: Spoil) -> Front {
        Front::serve(target, Some((how, Arc::default())))
    }

    /// `spoiled`: the stream of the upload spoiled on any of the front's
    /// connections (0 until then: only one is spoiled).
    fn serve(target: SocketAddr, spoil: Option<(Spoil, Arc<AtomicU32>)>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let front = Front {
            addr: listener.local_addr().expect("address"),
            accepted: Arc::default(),
            open: Arc::default(),
        };
        let serve = front.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                serve.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(target) else {
                    return;
                };
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    serve.open.lock().expect("the front").extend([a, b]);
                }
                match &spoil {
                    Some((how, spoiled)) => {
                        H2Relay::start(inbound, outbound, *how, spoiled.clone())
                    }
                    None => relay(inbound, outbound),
                }
            }
        });
        front
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Breaks every connection relayed so far, both ways.
    pub fn cut(&self) {
        for stream in self.open.lock().expect("the front").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies bytes both ways between two sockets until either side ends.
fn relay(inbound: TcpStream, outbound: TcpStream) {
    for (mut from, mut to) in [
        (inbound.try_clone(), outbound.try_clone()),
        (Ok(outbound), Ok(inbound)),
    ]
    .into_iter()
    .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// How a [`Front`] spoils the first upload request it relays (the first
/// `HEADERS` frame that does not end its stream: a `POST /v2/record`; the
/// `HEAD` probe ends its stream), the connection living on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    /// The request never reaches the recorder; the client gets
    /// `RST_STREAM(REFUSED_STREAM)` for it instead.
    Refuse,
    /// The request reaches the recorder, whose answer never reaches the
    /// client: the stream waits for its response head until the attempt
    /// is given up.
    Stall,
}

/// An HTTP/2 relay that spoils one upload stream ([`Spoil`]) and passes
/// every other frame unchanged, except that both sides' `SETTINGS` also
/// ask the peer for an HPACK dynamic table of 0: a dropped header block
/// cannot leave a decoder out of step with its encoder for the requests
/// that follow on the same connection (RFC 9113 §6.5.2, RFC 7541 §4.2).
struct H2Relay;

impl H2Relay {
    const PREFACE: usize = 24;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    /// `END_STREAM` on `HEADERS`, `ACK` on `SETTINGS`.
    const END_STREAM_OR_ACK: u8 = 0x1;
    const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
    const REFUSED_STREAM: u32 = 0x7;

    /// Relays `inbound` (the client) to `outbound` (the recorder) until
    /// either side ends (threads); `spoiled` is shared by every connection
    /// of the front.
    fn start(inbound: TcpStream, outbound: TcpStream, how: Spoil, spoiled: Arc<AtomicU32>) {
        let (Ok(client_in), Ok(server_in)) = (inbound.try_clone(), outbound.try_clone()) else {
            return;
        };
        // Both directions write to the client (frames and the reset):
        // whole frames, under the lock.
        let client_out = Arc::new(Mutex::new(inbound));
        let to_client = client_out.clone();
        // The stream spoiled on this connection, if any (0: none).
        let here = Arc::new(AtomicU32::new(0));
        let seen = here.clone();
        std::thread::spawn(move || {
            H2Relay::upstream(client_in, outbound, &to_client, how, &spoiled, &seen);
        });
        std::thread::spawn(move || H2Relay::downstream(server_in, &client_out, &here));
    }

    /// Client to recorder: the preface, then frame by frame.
    fn upstream(
        mut from: TcpStream,
        mut to: TcpStream,
        client: &Mutex<TcpStream>,
        how: Spoil,
        spoiled: &AtomicU32,
        here: &AtomicU32,
    ) {
        let mut preface = [0u8; H2Relay::PREFACE];
        if from.read_exact(&mut preface).is_ok() && to.write_all(&preface).is_ok() {
            while let Some(mut frame) = H2Frame::read(&mut from) {
                let upload =
                    frame.kind == H2Relay::HEADERS && frame.flags & H2Relay::END_STREAM_OR_ACK == 0;
                if upload
                    && spoiled
                        .compare_exchange(0, frame.stream, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    // Before the recorder can answer it.
                    here.store(frame.stream, Ordering::SeqCst);
                    if how == Spoil::Refuse {
                        let reset = H2Frame {
                            kind: H2Relay::RST_STREAM,
                            flags: 0,
                            stream: frame.stream,
                            payload: H2Relay::REFUSED_STREAM.to_be_bytes().to_vec(),
                        };
                        if !reset.write(&mut client.lock().expect("the client")) {
                            break;
                        }
                        continue;
                    }
                }
                if how == Spoil::Refuse && H2Relay::spoiled_here(here, frame.stream) {
                    continue;
                }
                H2Relay::no_dynamic_table(&mut frame);
                if !frame.write(&mut to) {
                    break;
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    /// Recorder to client, frame by frame.
    fn downstream(mut from: TcpStream, client: &Mutex<TcpStream>, here: &AtomicU32) {
        while let Some(mut frame) = H2Frame::read(&mut from) {
            if H2Relay::spoiled_here(here, frame.stream) {
                continue;
            }
            H2Relay::no_dynamic_table(&mut frame);
            if !frame.write(&mut client.lock().expect("the client")) {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = client
            .lock()
            .expect("the client")
            .shutdown(std::net::Shutdown::Both);
    }

    /// Whether `stream` is the one spoiled on this connection (never the
    /// connection's own frames, stream 0).
    fn spoiled_here(here: &AtomicU32, stream: u32) -> bool {
        stream != 0 && here.load(Ordering::SeqCst) == stream
    }

    /// Adds a dynamic table of 0 to a `SETTINGS` frame (the last value of
    /// a setting wins).
    fn no_dynamic_table(frame: &mut H2Frame) {
        if frame.kind == H2Relay::SETTINGS && frame.flags & H2Relay::END_STREAM_OR_ACK == 0 {
            frame
                .payload
                .extend_from_slice(&H2Relay::SETTINGS_HEADER_TABLE_SIZE.to_be_bytes());
            frame.payload.extend_from_slice(&0u32.to_be_bytes());
        }
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1).
struct H2Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl H2Frame {
    /// The next frame, `None` at the end of the connection.
    fn read(from: &mut TcpStream) -> Option<H2Frame> {
        let mut head = [0u8; 9];
        from.read_exact(&mut head).ok()?;
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = head;
        let mut payload = vec![0u8; u32::from_be_bytes([0, l0, l1, l2]) as usize];
        from.read_exact(&mut payload).ok()?;
        Some(H2Frame {
            kind,
            flags,
            stream: u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]),
            payload,
        })
    }

    /// `false` once the peer is gone.
    fn write(&self, to: &mut TcpStream) -> bool {
        let len = u32::try_from(self.payload.len()).expect("a frame length");
        let mut bytes = len.to_be_bytes()[1..].to_vec();
        bytes.extend_from_slice(&[self.kind, self.flags]);
        bytes.extend_from_slice(&self.stream.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        to.write_all(&bytes).is_ok()
    }
}

/// An address nothing listens on (connection refused).
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr
}

/// A front that speaks only HTTP/1.1, like an L7 proxy without h2c: a
/// connection that opens with the HTTP/2 preface (`PRI …`) is closed at
/// once; any other is relayed byte for byte to `target` (threads; the
/// listener lives as long as the test process).
pub fn h1_only_front(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(mut inbound) = inbound else { return };
            std::thread::spawn(move || {
                let _ = inbound.set_read_timeout(Some(STEP * 3));
                let mut first = [0u8; 3];
                if inbound.read_exact(&mut first).is_err() || &first == b"PRI" {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target) else {
                    return;
                };
                if outbound.write_all(&first).is_err() {
                    return;
                }
                let (Ok(mut up_in), Ok(mut down_out)) = (inbound.try_clone(), outbound.try_clone())
                else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_in, &mut outbound);
                    let _ = outbound.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut down_out, &mut inbound);
                let _ = inbound.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}

/// A private CA and a `localhost` certificate it signed, as PEM files in
/// `dir`: `(cert, key, ca)`.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecast upload test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    let cert = params.signed_by(&key, &issuer).expect("the certificate");
    let files = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    std::fs::write(&files.0, cert.pem()).expect("write the certificate");
    std::fs::write(&files.1, key.serialize_pem()).expect("write the key");
    std::fs::write(&files.2, ca_cert.pem()).expect("write the CA");
    files
}
