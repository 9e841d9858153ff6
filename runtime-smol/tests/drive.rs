//! `kubecast-smol` on smol and, unchanged, on async-std's executor: every
//! captured real-kubectl session driven through `drive` over loopback
//! sockets forwards every byte and gives its committed cast (times
//! aside); `FileSink` places casts as `kubecast-tokio`'s does; and
//! `ChannelSink` applies back-pressure and reports a dropped receiver.

use bytes::Bytes;
use futures_lite::future;
use kubecast_core::session::{RecordingStats, SessionEvent};
use kubecast_smol::{ChannelSink, DriveOptions, FileSink, SessionSink, SinkError, SinkItem};
use kubecast_tests::fixtures::FIXTURES;
use kubecast_tests::kubectl::TempDir;
use kubecast_tests::scenarios::adapters::{Executor, Smol};
use kubecast_tests::scenarios::fixtures::{drive_capture, without_times};
use std::future::Future;
use std::path::{Path, PathBuf};

struct OnSmol;
impl Executor for OnSmol {
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
}

struct OnAsyncStd;
impl Executor for OnAsyncStd {
    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

/// Each scenario as two tests: `on_smol::name` and `on_async_std::name`.
macro_rules! on_both_executors {
    ($($name:ident),* $(,)?) => {
        mod on_smol {
            $( #[test] fn $name() { super::$name::<super::OnSmol>() } )*
        }
        mod on_async_std {
            $( #[test] fn $name() { super::$name::<super::OnAsyncStd>() } )*
        }
    };
}

on_both_executors!(
    every_fixture_drives_to_its_committed_cast,
    small_buffers_change_nothing,
    a_file_sink_renames_when_complete_and_never_overwrites,
    an_unfinished_recording_is_kept_as_incomplete,
    a_channel_sink_holds_the_session_back_and_reports_a_dropped_receiver,
);

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn check_fixtures<E: Executor>(options: DriveOptions) {
    for fixture in FIXTURES {
        let capture = std::fs::read(fixture_dir().join(fixture.file)).unwrap();
        let expected =
            std::fs::read(fixture_dir().join(fixture.file.replace(".cap", ".cast"))).unwrap();
        eprintln!("driving {}", fixture.file);
        let driven = drive_capture::<Smol<E>>(&capture, options.clone());
        assert!(driven.finished, "{}: the sink was finished", fixture.file);
        assert!(
            driven.summary.recording.is_some(),
            "{}: {:?}",
            fixture.file,
            driven.summary
        );
        assert_eq!(
            without_times(&driven.cast),
            without_times(&expected),
            "{}",
            fixture.file
        );
        assert_eq!(driven.summary.cast_bytes, driven.cast.len() as u64);
    }
}

fn every_fixture_drives_to_its_committed_cast<E: Executor>() {
    check_fixtures::<E>(DriveOptions::default());
}

/// Reads of 7 bytes: every frame split across reads, same cast.
fn small_buffers_change_nothing<E: Executor>() {
    check_fixtures::<E>(DriveOptions {
        buffer_size: 7,
        ..DriveOptions::default()
    });
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn finished() -> SessionEvent {
    SessionEvent::RecordingFinished(RecordingStats::default())
}

/// One sink's life: `cast` bytes, then (if `complete`) the finish event,
/// then `finish`.
async fn record(dir: &Path, stem: &str, cast: &'static [u8], complete: bool) -> FileSink {
    let mut sink = FileSink::new(dir, stem);
    sink.cast(Bytes::from_static(cast)).await.unwrap();
    if complete {
        sink.event(finished()).await.unwrap();
    }
    sink.finish().await.unwrap();
    sink
}

fn a_file_sink_renames_when_complete_and_never_overwrites<E: Executor>() {
    let tmp = TempDir::new("smol-file-sink").unwrap();
    let dir = tmp.path().join("casts");
    E::block_on(async {
        let first = record(&dir, "ns_pod/../x", b"one\n", true).await;
        assert_eq!(first.path(), Some(dir.join("ns_pod-..-x.cast").as_path()));
        assert_eq!(first.written(), 4);
        let second = record(&dir, "ns_pod/../x", b"two\n", true).await;
        assert_eq!(
            second.path(),
            Some(dir.join("ns_pod-..-x_2.cast").as_path())
        );
        // Nothing cast, nothing on disk.
        let mut empty = FileSink::new(&dir, "nothing");
        empty.event(finished()).await.unwrap();
        empty.finish().await.unwrap();
        assert_eq!(empty.path(), None);
    });
    assert_eq!(names(&dir), ["ns_pod-..-x.cast", "ns_pod-..-x_2.cast"]);
    assert_eq!(
        std::fs::read(dir.join("ns_pod-..-x.cast")).unwrap(),
        b"one\n"
    );
}

fn an_unfinished_recording_is_kept_as_incomplete<E: Executor>() {
    let tmp = TempDir::new("smol-file-sink-incomplete").unwrap();
    let dir = tmp.path().to_path_buf();
    E::block_on(record(&dir, "cut", b"partial\n", false));
    assert_eq!(names(&dir), ["cut_incomplete.cast"]);
}

fn a_channel_sink_holds_the_session_back_and_reports_a_dropped_receiver<E: Executor>() {
    E::block_on(async {
        let (mut sink, rx) = ChannelSink::new(1);
        sink.cast(Bytes::from_static(b"a")).await.unwrap();
        // Full: the next output waits for the receiver.
        let mut second = Box::pin(sink.cast(Bytes::from_static(b"b")));
        assert!(future::poll_once(second.as_mut()).await.is_none());
        assert_eq!(
            rx.recv().await.unwrap(),
            SinkItem::Cast(Bytes::from_static(b"a"))
        );
        second.await.unwrap();
        assert_eq!(
            rx.recv().await.unwrap(),
            SinkItem::Cast(Bytes::from_static(b"b"))
        );
        drop(rx);
        assert!(matches!(sink.finish().await, Err(SinkError::Closed)));
    });
}
