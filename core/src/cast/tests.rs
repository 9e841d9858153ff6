//! The cast writer, against the asciicast v2 format
//! (<https://docs.asciinema.org/manual/asciicast/v2/>).

use super::*;
use crate::ExitStatus;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn text(out: &[u8]) -> &str {
    std::str::from_utf8(out).unwrap()
}

#[test]
fn output_events_have_microsecond_times_and_escaped_text() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(
        Duration::from_micros(1_234_567),
        DataStream::Stdout,
        b"a\"b\\c\n\x1b[0m\t",
        true,
        &mut out,
    );
    assert_eq!(
        text(&out),
        "[1.234567, \"o\", \"a\\\"b\\\\c\\n\\u001b[0m\\t\"]\n"
    );
}

#[test]
fn stderr_is_output_and_stdin_is_input() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(0), DataStream::Stderr, b"err", true, &mut out);
    w.data(ms(1), DataStream::Stdin, b"ls\r", true, &mut out);
    assert_eq!(
        text(&out),
        "[0.000000, \"o\", \"err\"]\n[0.001000, \"i\", \"ls\\r\"]\n"
    );
}

#[test]
fn resize_is_width_by_height() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.resize(
        ms(5),
        TerminalSize {
            width: 120,
            height: 40,
        },
        &mut out,
    );
    assert_eq!(text(&out), "[0.005000, \"r\", \"120x40\"]\n");
}

#[test]
fn time_never_goes_back() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(10), DataStream::Stdout, b"a", true, &mut out);
    w.data(ms(5), DataStream::Stdout, b"b", true, &mut out);
    assert_eq!(
        text(&out),
        "[0.010000, \"o\", \"a\"]\n[0.010000, \"o\", \"b\"]\n"
    );
}

#[test]
fn a_character_split_across_chunks_comes_out_whole() {
    for s in ["é", "€", "😀", "a€b😀c"] {
        let bytes = s.as_bytes();
        for cut in 0..=bytes.len() {
            let mut w = CastWriter::new();
            let mut out = Vec::new();
            w.data(ms(0), DataStream::Stdout, &bytes[..cut], true, &mut out);
            w.data(ms(1), DataStream::Stdout, &bytes[cut..], true, &mut out);
            w.finish(ms(2), None, &mut out);
            let joined: String = text(&out)
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()[2]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(joined, s, "cut at {cut}");
            assert_eq!(w.replaced(), 0);
        }
    }
}

#[test]
fn streams_keep_their_own_partial_characters() {
    // stdout holds half a "€" while stderr writes: neither corrupts the other.
    let euro = "€".as_bytes();
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(0), DataStream::Stdout, &euro[..1], true, &mut out);
    w.data(ms(1), DataStream::Stderr, b"x", true, &mut out);
    w.data(ms(2), DataStream::Stdout, &euro[1..], true, &mut out);
    assert_eq!(
        text(&out),
        "[0.001000, \"o\", \"x\"]\n[0.002000, \"o\", \"€\"]\n"
    );
}

#[test]
fn invalid_bytes_become_replacement_characters_and_are_counted() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(
        ms(0),
        DataStream::Stdout,
        b"a\xffb\xe2\x82c",
        true,
        &mut out,
    );
    assert_eq!(text(&out), "[0.000000, \"o\", \"a\u{fffd}b\u{fffd}c\"]\n");
    assert_eq!(w.replaced(), 2);
    out.clear();
    // A character still incomplete at the end is invalid.
    w.data(ms(1), DataStream::Stdout, b"\xf0\x9f", true, &mut out);
    assert!(out.is_empty(), "nothing to write yet");
    w.finish(ms(2), Some(&ExitStatus::ExitCode(3)), &mut out);
    assert_eq!(
        text(&out),
        "[0.002000, \"o\", \"\u{fffd}\"]\n\
         [0.002000, \"m\", \"kubecast: 3 invalid UTF-8 sequences replaced with U+FFFD\"]\n\
         [0.002000, \"m\", \"exit 3\"]\n"
    );
}

#[test]
fn a_held_prefix_followed_by_garbage_is_replaced_once() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(0), DataStream::Stdout, b"\xe2", true, &mut out);
    w.data(ms(0), DataStream::Stdout, b"\x82Az", true, &mut out);
    assert_eq!(text(&out), "[0.000000, \"o\", \"\u{fffd}Az\"]\n");
    assert_eq!(w.replaced(), 1);
}

#[test]
fn the_header_is_written_once() {
    let header = CastHeader {
        version: 2,
        width: 80,
        height: 24,
        timestamp: Some(1_700_000_000),
        command: Some("sh".into()),
        title: None,
        env: [("TERM".to_string(), "xterm".to_string())].into(),
        kubernetes: KubernetesInfo {
            namespace: "default".into(),
            pod: "demo".into(),
            resource: "exec".into(),
            protocol: "websocket".into(),
            protocol_version: "v5.channel.k8s.io".into(),
            tty: true,
            ..Default::default()
        },
    };
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.header(&header, &mut out);
    w.header(&header, &mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(v["kubernetes"]["pod"], "demo");
    assert_eq!(v["env"]["TERM"], "xterm");
}

proptest::proptest! {
    /// Any split of any bytes gives the same text as one call, and every
    /// line is valid JSON.
    #[test]
    fn chunking_does_not_change_the_text(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        cuts in proptest::collection::vec(0usize..64, 0..6),
    ) {
        let render = |pieces: &[&[u8]]| {
            let mut w = CastWriter::new();
            let mut out = Vec::new();
            for p in pieces {
                w.data(ms(0), DataStream::Stdout, p, false, &mut out);
            }
            w.finish(ms(0), None, &mut out);
            let mut joined = String::new();
            for line in std::str::from_utf8(&out).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if v[1] == "o" {
                    joined.push_str(v[2].as_str().unwrap());
                }
            }
            (joined, w.replaced())
        };
        let pieces = cut_at(&bytes, cuts);
        let whole = render(&[&bytes]);
        proptest::prop_assert_eq!(&render(&pieces), &whole);
        proptest::prop_assert_eq!(whole.0, String::from_utf8_lossy(&bytes).into_owned());
    }
}

#[test]
fn pieces_of_one_frame_make_one_event() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(1), DataStream::Stdout, b"hel", false, &mut out);
    w.data(ms(2), DataStream::Stdout, b"lo", true, &mut out);
    w.data(ms(3), DataStream::Stdout, b"!", true, &mut out);
    assert_eq!(
        text(&out),
        "[0.001000, \"o\", \"hello\"]\n[0.003000, \"o\", \"!\"]\n"
    );
}

#[test]
fn other_events_close_an_open_data_event() {
    let mut w = CastWriter::new();
    let mut out = Vec::new();
    w.data(ms(1), DataStream::Stdout, b"ab", false, &mut out);
    w.resize(
        ms(2),
        TerminalSize {
            width: 10,
            height: 5,
        },
        &mut out,
    );
    w.data(ms(3), DataStream::Stdout, b"cd", false, &mut out);
    w.data(ms(4), DataStream::Stderr, b"e", true, &mut out);
    w.finish(ms(5), None, &mut out);
    assert_eq!(
        text(&out),
        "[0.001000, \"o\", \"ab\"]\n[0.002000, \"r\", \"10x5\"]\n[0.003000, \"o\", \"cd\"]\n[0.004000, \"o\", \"e\"]\n"
    );
}

#[test]
fn a_huge_frame_is_cut_into_bounded_events_the_same_way_for_any_pieces() {
    let frame = vec![b'x'; MAX_EVENT_BYTES * 2 + 10];
    let render = |piece: usize| {
        let mut w = CastWriter::new();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = frame.chunks(piece).collect();
        for (i, c) in chunks.iter().enumerate() {
            w.data(
                ms(0),
                DataStream::Stdout,
                c,
                i + 1 == chunks.len(),
                &mut out,
            );
        }
        out
    };
    let whole = render(frame.len());
    assert_eq!(text(&whole).lines().count(), 3);
    assert_eq!(render(1000), whole);
    assert_eq!(render(MAX_EVENT_BYTES), whole);
}

/// `bytes` cut at `cuts` (clamped to its length, any order): the pieces a
/// reader might have been handed.
pub(super) fn cut_at(bytes: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
    let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        pieces.push(&bytes[last..p]);
        last = p;
    }
    pieces.push(&bytes[last..]);
    pieces
}
