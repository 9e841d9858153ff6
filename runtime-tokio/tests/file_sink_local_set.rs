//! A `FileSink` driven inside a `LocalSet` on the thread that runs a
//! multi-threaded runtime's `block_on`, where tokio refuses
//! `block_in_place`: the short writes fall back to the blocking pool. (Its
//! own test binary: the fallback is remembered for the whole process.)

use bytes::Bytes;
use kubecast_core::session::{RecordingStats, SessionEvent};
use kubecast_tests::kubectl::TempDir;
use kubecast_tokio::{FileSink, SessionSink};

#[test]
fn short_writes_in_a_local_set_on_the_block_on_thread_take_the_pool() {
    let tmp = TempDir::new("kubecast-tokio-file-sink-local").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(async {
        let mut sink = FileSink::new(tmp.path(), "local");
        for _ in 0..3 {
            sink.cast(Bytes::from_static(b"[0.1, \"o\", \"k\"]\n"))
                .await
                .unwrap();
        }
        sink.event(SessionEvent::RecordingFinished(RecordingStats::default()))
            .await
            .unwrap();
        sink.finish().await.unwrap();
    }));
    let text = std::fs::read_to_string(tmp.path().join("local.cast")).unwrap();
    assert_eq!(text.lines().count(), 3);
}
