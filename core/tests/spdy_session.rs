//! Whole remotecommand sessions over SPDY/3.1, as kubectl (client-go's
//! `streamProtocolV4`) and the kubelet (over moby/spdystream) run them:
//!
//! 1. the client opens `error`, then `stdin` (with -i), `stdout`, `stderr`
//!    (without -t), `resize` (with -t, v3+) — odd ids 1, 3, 5, 7 — and the
//!    server answers each with a SYN_REPLY carrying zero headers;
//! 2. one DATA frame per write; stdin EOF is an empty DATA frame with FIN;
//! 3. the end: a `metav1.Status` on the error stream (v4+; plain text on
//!    failure in v1–v3), RST_STREAM(CANCEL) for the streams, GOAWAY.
//!
//! Frames are built with our `FrameWriter`, whose zlib output other tests
//! check against an independent zlib (spdy_frames.rs).

mod spdy_support;

use kubecast_core::exec::OwnedExecEvent as E;
use kubecast_core::handshake::RemoteCommandVersion;
use kubecast_core::spdy::{goaway_status, rst_status, SpdyDecoder, SpdyError};
use kubecast_core::{
    CloseCause, DataStream, ExitStatus, Limits, Side, StreamEnd, StreamKind, TerminalSize,
};
use spdy_support::{bytewise, decode, Transcript};

const C: Side = Side::Client;
const U: Side = Side::Upstream;

fn opened(stream: StreamKind) -> E {
    E::StreamOpened { stream, by: C }
}

fn data(stream: DataStream, bytes: &[u8]) -> E {
    E::Data {
        stream,
        bytes: bytes.to_vec(),
    }
}

fn closed(stream: StreamKind, by: Side, how: StreamEnd) -> E {
    E::StreamClosed { stream, by, how }
}

/// `kubectl exec -it pod -- sh`, v4: type two commands, resize once, `exit 3`.
pub fn tty_session() -> Transcript {
    let mut t = Transcript::new();
    for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
        t.open(id, kind);
        t.reply(id);
    }
    t.data(C, 7, b"{\"Width\":80,\"Height\":24}\n", false);
    t.data(U, 5, b"$ ", false);
    t.data(C, 3, b"ls\r", false);
    t.data(U, 5, b"ls\r\nfile\r\n$ ", false);
    t.send(C, |w, out| w.ping(out, 1));
    t.send(U, |w, out| w.ping(out, 1));
    t.data(C, 7, b"{\"Width\":120,\"Height\":40}\n", false);
    t.data(C, 3, b"exit 3\r", false);
    t.data(U, 5, b"exit 3\r\n", false);
    let status = ExitStatus::ExitCode(3).to_status_json();
    t.data(U, 1, status.as_bytes(), false);
    t.data(U, 1, b"", true);
    t.data(U, 5, b"", true);
    t.send(C, |w, out| {
        for id in [1, 3, 5, 7] {
            w.rst_stream(out, id, rst_status::CANCEL);
        }
    });
    t.send(U, |w, out| w.goaway(out, 7, goaway_status::OK));
    t
}

fn tty_events() -> Vec<E> {
    vec![
        opened(StreamKind::Error),
        opened(StreamKind::Stdin),
        opened(StreamKind::Stdout),
        opened(StreamKind::Resize),
        E::Resize(TerminalSize {
            width: 80,
            height: 24,
        }),
        data(DataStream::Stdout, b"$ "),
        data(DataStream::Stdin, b"ls\r"),
        data(DataStream::Stdout, b"ls\r\nfile\r\n$ "),
        E::Resize(TerminalSize {
            width: 120,
            height: 40,
        }),
        data(DataStream::Stdin, b"exit 3\r"),
        data(DataStream::Stdout, b"exit 3\r\n"),
        E::Exit(ExitStatus::ExitCode(3)),
        closed(StreamKind::Error, U, StreamEnd::Fin),
        closed(StreamKind::Stdout, U, StreamEnd::Fin),
        closed(StreamKind::Error, C, StreamEnd::Reset(5)),
        closed(StreamKind::Stdin, C, StreamEnd::Reset(5)),
        closed(StreamKind::Stdout, C, StreamEnd::Reset(5)),
        closed(StreamKind::Resize, C, StreamEnd::Reset(5)),
        E::ConnectionClosed {
            by: U,
            cause: CloseCause::GoAway {
                last_good_stream: 7,
                status: 0,
            },
        },
    ]
}

#[test]
fn kubectl_exec_it_session() {
    let t = tty_session();
    let (events, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(events, tty_events());
}

#[test]
fn kubectl_exec_it_session_one_byte_at_a_time() {
    let t = tty_session();
    let chunks = t.chunks();
    let (events, result) = decode(
        RemoteCommandVersion::V4,
        &Limits::default(),
        &bytewise(&chunks),
    );
    assert_eq!(result, Ok(()));
    assert_eq!(events, tty_events());
}

#[test]
fn the_stream_id_of_each_role_is_known_for_injection() {
    let t = tty_session();
    let mut decoder = SpdyDecoder::new(RemoteCommandVersion::V4, &Limits::default());
    assert_eq!(decoder.stream_id(StreamKind::Error), None);
    decoder.decode(C, &t.segments[0].1, |_| {}).unwrap();
    assert_eq!(decoder.stream_id(StreamKind::Error), Some(1));
    assert_eq!(decoder.stream_id(StreamKind::Stderr), None);
}

#[test]
fn every_complete_frame_in_one_read_is_processed() {
    // The whole client direction in one read, then the whole upstream one:
    // nothing may wait for a further read.
    let t = tty_session();
    let mut client = Vec::new();
    let mut upstream = Vec::new();
    for (side, bytes) in &t.segments {
        match side {
            Side::Client => client.extend_from_slice(bytes),
            Side::Upstream => upstream.extend_from_slice(bytes),
        }
    }
    let mut decoder = SpdyDecoder::new(RemoteCommandVersion::V4, &Limits::default());
    let mut client_events = Vec::new();
    decoder
        .decode(C, &client, |e| client_events.push(e.to_owned()))
        .unwrap();
    let frame_ends = client_events
        .iter()
        .filter(|e| matches!(e, E::DataEnd { .. }))
        .count();
    assert_eq!(frame_ends, 2, "one per stdin data frame: {client_events:?}");
    assert_eq!(
        client_events.len(),
        4 + 2 + 2 + 4 + frame_ends,
        "{client_events:?}"
    );
    assert_eq!(decoder.partial_frame_len(C), 0);
    let mut upstream_events = Vec::new();
    decoder
        .decode(U, &upstream, |e| upstream_events.push(e.to_owned()))
        .unwrap();
    assert!(upstream_events.contains(&E::Exit(ExitStatus::ExitCode(3))));
    assert_eq!(
        upstream_events
            .last()
            .map(|e| matches!(e, E::ConnectionClosed { .. })),
        Some(true)
    );
}

/// `kubectl exec -i pod -- cat` (no tty), v4: stdin bytes that happen to look
/// like a SPDY name/value block must come out as data — the reference
/// implementation parsed client data frames as headers.
pub fn stdin_session() -> Transcript {
    let mut t = Transcript::new();
    for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")] {
        t.open(id, kind);
        t.reply(id);
    }
    t.data(
        C,
        3,
        b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05stdin",
        false,
    );
    t.data(C, 3, b"\x80\x03\x00\x01 not a SYN_STREAM\n", false);
    t.data(C, 3, b"", true);
    t.data(
        U,
        5,
        b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05stdin",
        false,
    );
    t.data(U, 7, b"cat: warning\n", false);
    t.data(U, 5, b"\x80\x03\x00\x01 not a SYN_STREAM\n", true);
    t.data(U, 7, b"", true);
    t.data(U, 1, ExitStatus::Success.to_status_json().as_bytes(), true);
    t
}

fn stdin_events() -> Vec<E> {
    let nv = b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05stdin";
    vec![
        opened(StreamKind::Error),
        opened(StreamKind::Stdin),
        opened(StreamKind::Stdout),
        opened(StreamKind::Stderr),
        data(
            DataStream::Stdin,
            &[&nv[..], b"\x80\x03\x00\x01 not a SYN_STREAM\n"].concat(),
        ),
        closed(StreamKind::Stdin, C, StreamEnd::Fin),
        data(DataStream::Stdout, nv),
        data(DataStream::Stderr, b"cat: warning\n"),
        data(DataStream::Stdout, b"\x80\x03\x00\x01 not a SYN_STREAM\n"),
        closed(StreamKind::Stdout, U, StreamEnd::Fin),
        closed(StreamKind::Stderr, U, StreamEnd::Fin),
        E::Exit(ExitStatus::Success),
        closed(StreamKind::Error, U, StreamEnd::Fin),
    ]
}

#[test]
fn kubectl_exec_i_stdin_is_data_and_eof_is_an_empty_fin() {
    let t = stdin_session();
    let (events, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(events, stdin_events());
    let chunks = t.chunks();
    let (bytewise_events, _) = decode(
        RemoteCommandVersion::V4,
        &Limits::default(),
        &bytewise(&chunks),
    );
    assert_eq!(bytewise_events, events);
}

#[test]
fn data_is_streamed_as_slices_of_the_input_without_empty_pieces() {
    let mut t = Transcript::new();
    t.open(1, "stdout");
    t.data(U, 1, b"abcdef", false);
    let upstream = &t.segments[1].1;
    let mut decoder = SpdyDecoder::new(RemoteCommandVersion::V4, &Limits::default());
    decoder.decode(C, &t.segments[0].1, |_| {}).unwrap();
    // Header plus 2 payload bytes, then the rest: two pieces, no buffering.
    let mut pieces = Vec::new();
    decoder
        .decode(U, &upstream[..10], |e| pieces.push(e.to_owned()))
        .unwrap();
    assert_eq!(decoder.partial_frame_len(U), 10);
    decoder
        .decode(U, &upstream[10..], |e| pieces.push(e.to_owned()))
        .unwrap();
    assert_eq!(
        pieces,
        vec![
            data(DataStream::Stdout, b"ab"),
            data(DataStream::Stdout, b"cdef"),
            E::DataEnd {
                stream: DataStream::Stdout
            },
        ]
    );
    // Only the header: no (empty) Data event.
    let mut again = Vec::new();
    decoder
        .decode(U, &upstream[..8], |e| again.push(e.to_owned()))
        .unwrap();
    assert!(again.is_empty());
}

#[test]
fn v1_to_v3_error_text_is_reported_when_the_error_stream_ends() {
    // v1–v3: the kubelet writes plain text on the error stream and closes it.
    for version in [
        RemoteCommandVersion::V1,
        RemoteCommandVersion::V2,
        RemoteCommandVersion::V3,
    ] {
        let mut t = Transcript::new();
        t.open(1, "error");
        t.reply(1);
        t.data(U, 1, b"error executing command: ", false);
        t.data(U, 1, b"sh: not found\n", true);
        let (events, result) = decode(version, &Limits::default(), &t.chunks());
        assert_eq!(result, Ok(()));
        assert_eq!(
            events,
            vec![
                opened(StreamKind::Error),
                E::Exit(ExitStatus::Failure {
                    reason: None,
                    message: "error executing command: sh: not found".into()
                }),
                closed(StreamKind::Error, U, StreamEnd::Fin),
            ],
            "{version:?}"
        );
    }
}

#[test]
fn v1_error_text_without_fin_is_flushed_at_upstream_eof_or_reset() {
    let mut t = Transcript::new();
    t.open(1, "error");
    t.data(U, 1, b"boom", false);
    let exit = E::Exit(ExitStatus::Failure {
        reason: None,
        message: "boom".into(),
    });
    // At EOF of the upstream side.
    let (events, result) = decode(RemoteCommandVersion::V1, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(events, vec![opened(StreamKind::Error), exit.clone()]);
    // At the client's RST_STREAM (client-go v1: `defer errorStream.Reset()`).
    t.send(C, |w, out| w.rst_stream(out, 1, rst_status::CANCEL));
    let (events, _) = decode(RemoteCommandVersion::V1, &Limits::default(), &t.chunks());
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Error),
            exit,
            closed(StreamKind::Error, C, StreamEnd::Reset(5))
        ]
    );
}

#[test]
fn data_the_wrong_way_or_on_unknown_streams_is_not_recorded() {
    let mut t = Transcript::new();
    t.open(1, "stdout");
    t.open(3, "stdin");
    t.open(5, "portforward-ish");
    t.data(C, 1, b"forged output", false); // client writing on stdout
    t.data(U, 3, b"echo of stdin", false); // server writing on stdin
    t.data(C, 5, b"unknown role", false);
    t.data(C, 9, b"never opened", true);
    t.data(U, 1, b"real", false);
    let (events, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdout),
            opened(StreamKind::Stdin),
            data(DataStream::Stdout, b"real"),
        ]
    );
}

#[test]
fn fin_on_syn_stream_syn_reply_and_headers_closes_the_stream() {
    let mut t = Transcript::new();
    t.send(C, |w, out| {
        w.syn_stream(out, 1, 0, 0, &[("streamtype", "error")], true)
            .unwrap()
    });
    t.open(3, "stdout");
    t.send(U, |w, out| {
        w.syn_reply(out, 1, &[], true).unwrap();
        w.headers(out, 3, &[("x-note", "bye")], true).unwrap();
    });
    let (events, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Error),
            closed(StreamKind::Error, C, StreamEnd::Fin),
            opened(StreamKind::Stdout),
            closed(StreamKind::Error, U, StreamEnd::Fin),
            closed(StreamKind::Stdout, U, StreamEnd::Fin),
        ]
    );
}

#[test]
fn a_bad_resize_value_is_a_typed_error() {
    let mut t = Transcript::new();
    t.open(7, "resize");
    t.data(C, 7, b"[80, 24]\n", false);
    let (_, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert!(matches!(result, Err(SpdyError::Resize(_))), "{result:?}");
}

#[test]
fn a_resize_value_split_across_data_frames_is_one_resize() {
    let mut t = Transcript::new();
    t.open(7, "resize");
    t.data(C, 7, b"{\"Width\":1", false);
    t.data(C, 7, b"00,\"Height\":50}", false);
    let (events, result) = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Resize),
            E::Resize(TerminalSize {
                width: 100,
                height: 50
            })
        ]
    );
}
