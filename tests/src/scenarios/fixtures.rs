//! A captured real-kubectl session (`tests/fixtures/*.cap`) played through
//! a runtime's `drive` over loopback sockets: every byte must arrive
//! unchanged, and the cast must be the committed `.cast` apart from the
//! event times (the capture's pacing is not replayed).

use super::{socket_pair, Collect, Peer, Runtime};
use kubecast_core::capture::{CaptureReader, RecordKind};
use kubecast_core::drive::{DriveOptions, DriveSummary};
use kubecast_core::session::{Session, SessionConfig, SessionMeta};
use kubecast_core::Side;

/// What driving a capture gave.
#[derive(Debug)]
pub struct Driven {
    pub summary: DriveSummary,
    pub cast: Vec<u8>,
    pub finished: bool,
}

/// Plays `capture` through `R::drive` with `options`: each record is
/// written by its side and read, unchanged, at the other before the next
/// one (so the driver sees the capture's order); end-of-file records shut
/// that side's write half down.
pub fn drive_capture<R: Runtime>(capture: &[u8], options: DriveOptions) -> Driven {
    let (header, records) = CaptureReader::new(capture).expect("a capture");
    // The session the committed casts were replayed with: the capture
    // header's metadata.
    let meta = SessionMeta {
        started_unix: header.timestamp,
        user: header.user,
        uid: header.uid,
        groups: header.groups,
        session_id: header.session_id,
        ..SessionMeta::default()
    };
    let config = SessionConfig {
        cluster: header.cluster,
        ..SessionConfig::default()
    };
    let session = Session::new(config, meta);
    let (mut client, client_driver) = socket_pair();
    let (mut upstream, upstream_driver) = socket_pair();
    let sink = Collect::default();
    let driver_sink = sink.clone();
    let driven = std::thread::spawn(move || {
        R::drive(
            session,
            client_driver,
            upstream_driver,
            options,
            driver_sink,
        )
    });
    let mut open = [true, true];
    for record in records {
        let record = record.expect("a readable record");
        let (from, to): (&mut Peer, &mut Peer) = match record.kind {
            RecordKind::Data(Side::Client) | RecordKind::Eof(Side::Client) => {
                (&mut client, &mut upstream)
            }
            _ => (&mut upstream, &mut client),
        };
        match record.kind {
            RecordKind::Data(_) => {
                from.write(record.bytes);
                assert_eq!(to.read_n(record.bytes.len()), record.bytes);
            }
            RecordKind::Eof(side) => {
                from.shutdown();
                assert!(to.read_to_eof().is_empty(), "nothing after {side:?}'s end");
                open[usize::from(side == Side::Upstream)] = false;
            }
        }
    }
    if open[1] {
        upstream.shutdown();
        assert!(client.read_to_eof().is_empty());
    }
    if open[0] {
        client.shutdown();
        assert!(upstream.read_to_eof().is_empty());
    }
    let summary = driven
        .join()
        .expect("the driver thread")
        .expect("a clean end");
    let got = sink.received();
    Driven {
        summary,
        cast: got.cast,
        finished: got.finished,
    }
}

/// A cast without its event times: the header line, then each event's
/// code and data.
pub fn without_times(cast: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(cast)
        .lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Array(event)) => {
                    serde_json::Value::Array(event.into_iter().skip(1).collect()).to_string()
                }
                _ => line.to_owned(),
            },
        )
        .collect()
}
