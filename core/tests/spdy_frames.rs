//! SPDY/3.1 frames one by one: wire layouts from the SPDY/3.1 draft
//! (<https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/>),
//! header compression against an independent zlib, and every bound.

mod spdy_support;

use kubecast_core::exec::OwnedExecEvent as E;
use kubecast_core::handshake::RemoteCommandVersion;
use kubecast_core::spdy::{
    frame_type, write_raw_control, Frame, FrameReader, FrameWriter, Headers, Setting, SpdyDecoder,
    SpdyError,
};
use kubecast_core::{CloseCause, Limits, Side, StreamEnd, StreamKind};
use spdy_support::{decode, Transcript};

const C: Side = Side::Client;
const U: Side = Side::Upstream;
const V4: RemoteCommandVersion = RemoteCommandVersion::V4;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn read_all(bytes: &[u8]) -> Vec<Frame> {
    let mut reader = FrameReader::new(&Limits::default());
    reader.push(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames.push(frame);
    }
    assert!(reader.at_frame_boundary());
    frames
}

// ---- fixed-layout frames, byte for byte (draft section 2.6) ----

#[test]
fn frames_without_header_blocks_have_the_draft_layouts() {
    let w = FrameWriter::new();
    let mut out = Vec::new();
    // 2.2.2 data frame: stream 0x7fffffff, FIN, 3 bytes.
    w.data(&mut out, 0x7FFF_FFFF, b"abc", true);
    assert_eq!(out, hex("7fffffff 01000003 616263"));
    out.clear();
    // 2.6.3 RST_STREAM: version 3, type 3, length 8, stream 1, CANCEL (5).
    w.rst_stream(&mut out, 1, 5);
    assert_eq!(out, hex("80030003 00000008 00000001 00000005"));
    out.clear();
    // 2.6.4 SETTINGS: one entry, flags 0, id 7 (INITIAL_WINDOW_SIZE).
    w.settings(
        &mut out,
        false,
        &[Setting {
            flags: 1,
            id: 7,
            value: 65536,
        }],
    )
    .unwrap();
    assert_eq!(out, hex("80030004 0000000c 00000001 01000007 00010000"));
    out.clear();
    // 2.6.5 PING: length 4.
    w.ping(&mut out, 1);
    assert_eq!(out, hex("80030006 00000004 00000001"));
    out.clear();
    // 2.6.6 GOAWAY: last good stream 7, status OK.
    w.goaway(&mut out, 7, 0);
    assert_eq!(out, hex("80030007 00000008 00000007 00000000"));
    out.clear();
    // 2.6.8 WINDOW_UPDATE: stream 3, delta 1000.
    w.window_update(&mut out, 3, 1000);
    assert_eq!(out, hex("80030009 00000008 00000003 000003e8"));
}

#[test]
fn every_frame_type_round_trips_through_reader_and_writer() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_id: 0,
            priority: 2,
            slot: 0,
            fin: false,
            unidirectional: true,
            headers: Headers::from_pairs(&[
                ("streamtype", "error"),
                ("accept", "a"),
                ("accept", "b"),
            ]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::default(),
        },
        Frame::Headers {
            stream_id: 1,
            fin: true,
            headers: Headers::from_pairs(&[("x-a", "1")]),
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: b"payload".to_vec(),
        },
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Vec::new(),
        },
        Frame::RstStream {
            stream_id: 1,
            status: 5,
        },
        Frame::Settings {
            clear: true,
            settings: vec![
                Setting {
                    flags: 0,
                    id: 4,
                    value: 100,
                },
                Setting {
                    flags: 2,
                    id: 7,
                    value: 1 << 20,
                },
            ],
        },
        Frame::Ping { id: 2 },
        Frame::GoAway {
            last_good_stream: 1,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 4096,
        },
        Frame::Unknown {
            frame_type: 10,
            flags: 0,
            payload: b"credential".to_vec(),
        },
    ];
    let mut writer = FrameWriter::new();
    let mut wire = Vec::new();
    for f in &frames {
        writer.frame(&mut wire, f).unwrap();
    }
    assert_eq!(read_all(&wire), frames);
    // Fed one byte at a time, the reader gives the same frames.
    let mut reader = FrameReader::new(&Limits::default());
    let mut got = Vec::new();
    for b in &wire {
        reader.push(std::slice::from_ref(b));
        while let Some(f) = reader.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn multi_values_are_nul_joined_on_the_wire_and_names_lowercased() {
    let mut w = FrameWriter::new();
    let mut wire = Vec::new();
    w.syn_reply(&mut wire, 1, &[("X-Multi", "a"), ("x-multi", "b")], false)
        .unwrap();
    let frames = read_all(&wire);
    let Frame::SynReply { headers, .. } = &frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(headers.len(), 1);
    assert_eq!(headers.iter().next().unwrap().0, "x-multi");
    assert_eq!(headers.get_all("x-multi"), ["a", "b"]);
    assert_eq!(headers.get("X-MULTI"), Some("a"));
}

#[test]
fn stream_ids_are_31_bits() {
    // A SYN_STREAM whose stream-id word has the reserved bit set is stream 1
    // (draft 2.6.1: "31-bit value"); the reference implementation kept the
    // bit and lost every data frame of the stream.
    let mut w = FrameWriter::new();
    let mut wire = Vec::new();
    w.syn_stream(&mut wire, 1, 0, 0, &[("streamtype", "stdin")], false)
        .unwrap();
    wire[8] |= 0x80;
    w.data(&mut wire, 1, b"x", false);
    let (events, result) = decode(V4, &Limits::default(), &[(C, &wire)]);
    assert_eq!(result, Ok(()));
    assert_eq!(events.len(), 2, "{events:?}");
}

// ---- header compression ----

/// The client's first four SYN_STREAMs of `kubectl exec -it` (error,
/// stdin, stdout, resize on 1, 3, 5, 7), compressed by C zlib 1.2.13
/// (Python's `zlib.compressobj(level=9, zdict=<SPDY/3 dictionary>)`, one
/// object for all four blocks, `flush(Z_SYNC_FLUSH)` after each) — an
/// implementation independent of ours. Note the zlib header `78 f9` with
/// DICTID `e3c6a7c2`.
const C_ZLIB_SYN_STREAMS: &str = "
    80030001000000280000000100000000000078f9e3c6a7c202a62346703a2b29
    4a4dcc851625aca9a08006000000ffff80030001000000170000000300000000
    0000c22e555c02cc2e00000000ffff8003000100000019000000050000000000
    00c22a054ce729f9a52500000000ffff80030001000000170000000700000000
    0000c22e072c7e80f10d000000ffff";

#[test]
fn header_blocks_from_an_independent_zlib_decode_with_the_dictionary() {
    let wire = hex(C_ZLIB_SYN_STREAMS);
    let (events, result) = decode(V4, &Limits::default(), &[(C, &wire)]);
    assert_eq!(result, Ok(()));
    let opened: Vec<_> = [
        StreamKind::Error,
        StreamKind::Stdin,
        StreamKind::Stdout,
        StreamKind::Resize,
    ]
    .into_iter()
    .map(|stream| E::StreamOpened { stream, by: C })
    .collect();
    assert_eq!(events, opened);
    // The later blocks lean on the shared context: alone they do not decode.
    let second_on = &wire[48..];
    let (_, result) = decode(V4, &Limits::default(), &[(C, second_on)]);
    assert!(matches!(result, Err(SpdyError::Zlib(_))), "{result:?}");
}

/// The client direction of a real `kubectl exec -i p -- cat` (kubectl
/// v1.32.4, `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), captured against a
/// minimal SPDY server: SYN_STREAMs for error, stdin, stdout, stderr
/// (1, 3, 5, 7) compressed by Go's compress/zlib through spdystream, then
/// stdin `hello\n` followed by bytes shaped like a name/value block, then
/// the empty DATA + FIN of stdin EOF.
const KUBECTL_EXEC_I_CLIENT: &str = "
    80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392
    a2d4c45c6851c29a0a0a6800000000ffff800300010000001700000003000000
    000000c22e555c92929907000000ffff80030001000000190000000500000000
    0000c22ac5565c92925f5a02000000ffff800300010000001500000007000000
    000000c229975a5404000000ffff000000030000001968656c6c6f0a00000001
    0000000a73747265616d747970650a0000000301000000";

#[test]
fn real_kubectl_client_bytes_decode() {
    let wire = hex(KUBECTL_EXEC_I_CLIENT);
    let mut expected: Vec<_> = [
        StreamKind::Error,
        StreamKind::Stdin,
        StreamKind::Stdout,
        StreamKind::Stderr,
    ]
    .into_iter()
    .map(|stream| E::StreamOpened { stream, by: C })
    .collect();
    expected.push(E::Data {
        stream: kubecast_core::DataStream::Stdin,
        bytes: b"hello\n\x00\x00\x00\x01\x00\x00\x00\nstreamtype\n".to_vec(),
    });
    expected.push(E::StreamClosed {
        stream: StreamKind::Stdin,
        by: C,
        how: StreamEnd::Fin,
    });
    for chunks in [
        vec![(C, &wire[..])],
        spdy_support::bytewise(&[(C, &wire[..])]),
    ] {
        let (events, result) = decode(V4, &Limits::default(), &chunks);
        assert_eq!(result, Ok(()));
        assert_eq!(events, expected);
    }
    // The FrameReader (the test upstream's view) agrees.
    let frames = read_all(&wire);
    assert_eq!(frames.len(), 6);
    assert!(
        matches!(&frames[3], Frame::SynStream { stream_id: 7, headers, .. }
        if headers.get("streamtype") == Some("stderr"))
    );
}

#[test]
fn the_zlib_context_is_carried_across_all_header_frames_of_a_direction() {
    // Uninteresting header frames (HEADERS, SYN_REPLY on the same side)
    // sit between the SYN_STREAMs; each must be inflated in order.
    let mut t = Transcript::new();
    t.open(1, "error");
    t.send(C, |w, out| {
        w.headers(out, 1, &[("x-trace", "abc")], false).unwrap()
    });
    t.open(3, "stdout");
    t.send(C, |w, out| {
        w.syn_reply(out, 2, &[("streamtype", "stderr")], false)
            .unwrap()
    });
    t.open(5, "stderr");
    t.send(U, |w, out| {
        for id in [1, 3, 5] {
            w.syn_reply(out, id, &[("streamtype", "noise")], false)
                .unwrap();
        }
    });
    let (events, result) = decode(V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        [StreamKind::Error, StreamKind::Stdout, StreamKind::Stderr]
            .into_iter()
            .map(|stream| E::StreamOpened { stream, by: C })
            .collect::<Vec<_>>()
    );
}

#[test]
fn unknown_control_frames_are_skipped_by_length() {
    let mut t = Transcript::new();
    t.send(C, |_, out| {
        write_raw_control(out, 10, 0, b"\x00\x01\x02 opaque").unwrap()
    });
    t.send(C, |_, out| {
        write_raw_control(out, 0xFFFF, 0xFF, b"").unwrap()
    });
    t.open(1, "stdin");
    t.send(C, |w, out| w.settings(out, false, &[]).unwrap());
    t.send(C, |w, out| w.window_update(out, 1, 10));
    t.data(C, 1, b"x", false);
    let (events, result) = decode(V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(events.len(), 2, "{events:?}");
}

// ---- bounds and malformed frames ----

#[test]
fn a_zlib_bomb_hits_the_header_block_limit() {
    // 300 KiB of one byte compresses to well under a kilobyte.
    let bomb = "a".repeat(300 * 1024);
    let mut t = Transcript::new();
    t.send(C, |w, out| {
        w.syn_stream(
            out,
            1,
            0,
            0,
            &[("streamtype", "stdin"), ("x-bomb", &bomb)],
            false,
        )
        .unwrap()
    });
    assert!(t.segments[0].1.len() < 2048);
    let limits = Limits::default();
    let (events, result) = decode(V4, &limits, &t.chunks());
    assert!(events.is_empty());
    assert_eq!(
        result,
        Err(SpdyError::HeaderBlockTooLarge {
            limit: limits.max_header_block
        })
    );
}

#[test]
fn an_oversized_control_frame_is_refused_from_its_header() {
    let mut wire = Vec::new();
    write_raw_control(&mut wire, frame_type::SETTINGS, 0, &vec![0; 70_000]).unwrap();
    let mut decoder = SpdyDecoder::new(V4, &Limits::default());
    // The 8-byte header alone is enough to refuse it.
    assert_eq!(
        decoder.decode(C, &wire[..8], |_| {}),
        Err(SpdyError::FrameTooLarge {
            length: 70_000,
            limit: 64 * 1024
        })
    );
}

#[test]
fn too_many_and_duplicate_streams() {
    let limits = Limits {
        max_streams: 2,
        ..Limits::default()
    };
    let mut t = Transcript::new();
    for id in [1, 3, 5] {
        t.open(id, "stdout");
    }
    let (events, result) = decode(V4, &limits, &t.chunks());
    assert_eq!(events.len(), 2);
    assert_eq!(result, Err(SpdyError::TooManyStreams { limit: 2 }));

    let mut t = Transcript::new();
    t.open(1, "stdout");
    t.open(1, "stderr");
    let (_, result) = decode(V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Err(SpdyError::DuplicateStreamId(1)));
}

#[test]
fn control_frame_lengths_are_checked_per_type() {
    let cases: &[(u16, &[u8])] = &[
        (frame_type::RST_STREAM, b"\0\0\0\x01"),
        (frame_type::PING, b"\0\0\0\x01\0\0\0\0"),
        (frame_type::GOAWAY, b"\0\0\0\x01"),
        (frame_type::WINDOW_UPDATE, b"\0\0\0\x01\0\0"),
        (frame_type::SYN_STREAM, b"\0\0\0\x01\0\0\0\0\0"),
        (frame_type::SYN_REPLY, b"\0\0\0"),
        (frame_type::HEADERS, b""),
        // SETTINGS: count 2 but one entry.
        (frame_type::SETTINGS, b"\0\0\0\x02\0\0\0\x04\0\0\0\x01"),
    ];
    for (kind, payload) in cases {
        let mut wire = Vec::new();
        write_raw_control(&mut wire, *kind, 0, payload).unwrap();
        let (_, result) = decode(V4, &Limits::default(), &[(U, &wire)]);
        assert_eq!(
            result,
            Err(SpdyError::BadControlLength {
                frame_type: *kind,
                length: payload.len()
            }),
            "type {kind}"
        );
    }
}

#[test]
fn other_malformed_frames_are_typed_errors() {
    // SPDY/2 control frame.
    let (_, r) = decode(
        V4,
        &Limits::default(),
        &[(C, &hex("80020006 00000004 00000001"))],
    );
    assert_eq!(r, Err(SpdyError::BadVersion(2)));
    // SYN_STREAM for stream 0.
    let mut w = FrameWriter::new();
    let mut wire = Vec::new();
    w.syn_stream(&mut wire, 0, 0, 0, &[("streamtype", "stdin")], false)
        .unwrap();
    let (_, r) = decode(V4, &Limits::default(), &[(C, &wire)]);
    assert_eq!(r, Err(SpdyError::ZeroStreamId));
    // A header block that is not zlib.
    let mut wire = Vec::new();
    write_raw_control(&mut wire, frame_type::SYN_REPLY, 0, b"\0\0\0\x01garbage").unwrap();
    let (_, r) = decode(V4, &Limits::default(), &[(U, &wire)]);
    assert!(matches!(r, Err(SpdyError::Zlib(_))), "{r:?}");
}

// ---- errors are sticky; end of file ----

#[test]
fn errors_are_sticky_across_both_sides_and_finish() {
    let mut decoder = SpdyDecoder::new(V4, &Limits::default());
    let bad = hex("80020006 00000004 00000001");
    let err = decoder.decode(C, &bad, |_| {}).unwrap_err();
    let mut good = Vec::new();
    FrameWriter::new().ping(&mut good, 2);
    let mut events = 0;
    assert_eq!(decoder.decode(U, &good, |_| events += 1), Err(err.clone()));
    assert_eq!(decoder.decode(C, &good, |_| events += 1), Err(err.clone()));
    assert_eq!(decoder.finish(U, |_| events += 1), Err(err));
    assert_eq!(events, 0);
}

#[test]
fn eof_at_a_frame_boundary_is_clean_inside_a_frame_is_truncated() {
    let mut t = Transcript::new();
    t.open(1, "stdout");
    t.data(U, 1, b"hello", false);
    t.send(U, |w, out| w.goaway(out, 1, 0));
    let upstream = t.segments[1].1.clone();
    for cut in 0..=upstream.len() {
        let mut decoder = SpdyDecoder::new(V4, &Limits::default());
        decoder.decode(C, &t.segments[0].1, |_| {}).unwrap();
        decoder.decode(U, &upstream[..cut], |_| {}).unwrap();
        let partial = decoder.partial_frame_len(U);
        let boundary = [0, 13, upstream.len()].contains(&cut);
        assert_eq!(partial == 0, boundary, "cut {cut}: partial {partial}");
        let result = decoder.finish(U, |_| {});
        if boundary {
            assert_eq!(result, Ok(()), "cut {cut}");
        } else {
            assert_eq!(result, Err(SpdyError::Truncated { partial }), "cut {cut}");
        }
    }
}

#[test]
fn partial_frame_len_counts_the_bytes_of_the_unfinished_frame() {
    let mut w = FrameWriter::new();
    let mut wire = Vec::new();
    w.syn_stream(&mut wire, 1, 0, 0, &[("streamtype", "stdout")], false)
        .unwrap();
    let first = wire.len();
    w.data(&mut wire, 1, b"0123456789", false);
    let mut decoder = SpdyDecoder::new(V4, &Limits::default());
    for (i, b) in wire.iter().enumerate() {
        decoder.decode(C, std::slice::from_ref(b), |_| {}).unwrap();
        let fed = i + 1;
        let expected = if fed <= first {
            fed % first
        } else {
            (fed - first) % (wire.len() - first)
        };
        assert_eq!(decoder.partial_frame_len(C), expected, "after {fed} bytes");
    }
    assert_eq!(decoder.partial_frame_len(U), 0);
}

#[test]
fn bytes_after_eof_are_an_error() {
    let mut decoder = SpdyDecoder::new(V4, &Limits::default());
    decoder.finish(C, |_| {}).unwrap();
    assert_eq!(decoder.decode(C, b"", |_| {}), Ok(()));
    let mut ping = Vec::new();
    FrameWriter::new().ping(&mut ping, 1);
    assert_eq!(
        decoder.decode(C, &ping, |_| {}),
        Err(SpdyError::DataAfterEof)
    );
}

#[test]
fn goaway_and_rst_stream_events_carry_their_codes() {
    let mut t = Transcript::new();
    t.open(3, "stdin");
    t.send(U, |w, out| {
        w.rst_stream(out, 3, 2);
        w.rst_stream(out, 99, 5); // unknown stream: nothing
        w.goaway(out, 0x7FFF_FFFF, 2);
    });
    let (events, result) = decode(V4, &Limits::default(), &t.chunks());
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            E::StreamOpened {
                stream: StreamKind::Stdin,
                by: C
            },
            E::StreamClosed {
                stream: StreamKind::Stdin,
                by: U,
                how: StreamEnd::Reset(2)
            },
            E::ConnectionClosed {
                by: U,
                cause: CloseCause::GoAway {
                    last_good_stream: 0x7FFF_FFFF,
                    status: 2
                }
            },
        ]
    );
}
