//! Recorded sessions against the real `kubecast recorder`, for any
//! [`Runtime`]: complete over v2 and v1, failover, TLS, the ack window
//! (fail-closed and fail-open), and the recorder killed mid-upload.

pub use super::fronts::{h1_only_front, refused_addr, tls_files, Front, Spoil};
use super::script::*;
pub use super::sharing::*;
use super::{
    eventually, socket_pair, wait_log, Collect, EndSignal, Peer, RecordJob, Recorded, RecorderPeer,
    Runtime, STEP,
};
use kubecast_core::drive::{DriveErrorKind, DriveOptions, UploadEvent, UploadTls};
use kubecast_core::recording::Policy;
use kubecast_core::upload::{
    AttemptError, FailureReason, Protocol, Stage, Then, UploadConfig, UploadFailure,
};
use std::path::Path;
use std::sync::mpsc;
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

    /// Waits until the sink has seen the upload fail.
    pub fn wait_upload_failed(&self) {
        let sink = self.sink.clone();
        eventually("the upload to fail", || {
            sink.received()
                .upload
                .iter()
                .any(|e| matches!(e, UploadEvent::Failed(_)))
                .then_some(())
        });
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

pub(super) fn started_with(events: &[UploadEvent], protocol: Protocol) -> bool {
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
    h.wait_upload_failed();
    h.finish_session(b"LATE-OUTPUT\r\n");
    let (recorded, _) = h.join();
    recorder.signal("CONT");
    let (summary, failure) = recorded.lost_upload();
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
    let (_, failure) = recorded.lost_upload();
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
