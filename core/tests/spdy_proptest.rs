//! Properties of the SPDY decoder: the chunking of either direction never
//! changes the (coalesced) events, and no input — random, or a real session
//! with bytes flipped — makes it panic.

mod spdy_support;

use kubecast_core::exec::{push_coalesced, ExitStatus};
use kubecast_core::handshake::RemoteCommandVersion;
use kubecast_core::spdy::{FrameReader, SpdyDecoder};
use kubecast_core::{Limits, Side};
use proptest::prelude::*;
use spdy_support::{decode, Transcript};

/// A two-direction session touching every frame type the decoder acts on
/// (see spdy_session.rs for the kubectl flows it imitates).
fn session() -> Transcript {
    let mut t = Transcript::new();
    for (id, kind) in [
        (1, "error"),
        (3, "stdin"),
        (5, "stdout"),
        (7, "stderr"),
        (9, "resize"),
    ] {
        t.open(id, kind);
        t.reply(id);
    }
    t.send(Side::Client, |w, out| w.ping(out, 1));
    t.send(Side::Upstream, |w, out| {
        w.ping(out, 1);
        w.settings(out, false, &[]).unwrap();
    });
    t.data(Side::Client, 9, b"{\"Width\":80,\"Height\":24}\n", false);
    t.data(Side::Client, 3, b"hello\n", false);
    t.data(Side::Upstream, 5, "héllo → wörld\n".as_bytes(), false);
    t.send(Side::Client, |w, out| {
        w.headers(out, 3, &[("x", "y")], false).unwrap()
    });
    t.data(Side::Upstream, 7, b"warning\n", false);
    t.data(Side::Client, 3, b"", true);
    t.data(Side::Client, 9, b"{\"Width\":100,", false);
    t.data(Side::Client, 9, b"\"Height\":30}\n", false);
    t.data(Side::Upstream, 5, &[0u8; 300], true);
    t.data(
        Side::Upstream,
        1,
        ExitStatus::ExitCode(7).to_status_json().as_bytes(),
        true,
    );
    t.send(Side::Client, |w, out| {
        w.rst_stream(out, 1, 5);
        w.window_update(out, 5, 1);
    });
    t.send(Side::Upstream, |w, out| w.goaway(out, 9, 0));
    t
}

/// Splits every segment at the given cut points (taken modulo its length).
fn split<'a>(segments: &[(Side, &'a [u8])], cuts: &[usize]) -> Vec<(Side, &'a [u8])> {
    let mut out = Vec::new();
    let mut cuts = cuts.iter().cycle();
    for (side, bytes) in segments {
        let mut rest = *bytes;
        while !rest.is_empty() {
            let n = 1 + cuts.next().copied().unwrap_or(0) % rest.len();
            let (piece, tail) = rest.split_at(n);
            out.push((*side, piece));
            rest = tail;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..64, 1..40)) {
        let t = session();
        let whole = decode(RemoteCommandVersion::V4, &Limits::default(), &t.chunks());
        prop_assert_eq!(&whole.1, &Ok(()));
        prop_assert!(whole.0.len() > 15);
        let chunks = t.chunks();
        let pieces = split(&chunks, &cuts);
        let split_result = decode(RemoteCommandVersion::V4, &Limits::default(), &pieces);
        prop_assert_eq!(split_result, whole);
    }

    #[test]
    fn random_bytes_never_panic(
        input in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..12)
    ) {
        let mut decoder = SpdyDecoder::new(RemoteCommandVersion::V4, &Limits::default());
        let mut events = Vec::new();
        for (client, bytes) in &input {
            let side = if *client { Side::Client } else { Side::Upstream };
            let _ = decoder.decode(side, bytes, |e| push_coalesced(&mut events, &e));
            let _ = decoder.partial_frame_len(side);
        }
        let _ = decoder.finish(Side::Upstream, |e| push_coalesced(&mut events, &e));
        let mut reader = FrameReader::new(&Limits::default());
        for (_, bytes) in &input {
            reader.push(bytes);
            while let Ok(Some(_)) = reader.next_frame() {}
        }
    }

    #[test]
    fn random_frame_headers_after_a_valid_prefix_never_panic(
        head in proptest::array::uniform8(any::<u8>()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        control in any::<bool>(),
    ) {
        // Valid stream setup first, so random frames meet a live stream
        // table and zlib contexts.
        let t = session();
        let mut decoder = SpdyDecoder::new(RemoteCommandVersion::V3, &Limits::default());
        for (side, bytes) in t.chunks().into_iter().take(10) {
            decoder.decode(side, bytes, |_| {}).unwrap();
        }
        let mut head = head;
        if control {
            head[0] |= 0x80;
            head[1] = 3;
            head[2] = 0;
            head[3] %= 12;
        }
        for side in [Side::Client, Side::Upstream] {
            let _ = decoder.decode(side, &head, |_| {});
            let _ = decoder.decode(side, &body, |_| {});
            let _ = decoder.finish(side, |_| {});
        }
    }

    #[test]
    fn mutated_sessions_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cuts in proptest::collection::vec(0usize..64, 1..10),
    ) {
        let t = session();
        let mut segments: Vec<(Side, Vec<u8>)> = t.segments.clone();
        let total: usize = segments.iter().map(|(_, b)| b.len()).sum();
        for (index, value) in &flips {
            let mut at = index.index(total);
            for (_, bytes) in segments.iter_mut() {
                if at < bytes.len() {
                    bytes[at] ^= value | 1;
                    break;
                }
                at -= bytes.len();
            }
        }
        let chunks: Vec<(Side, &[u8])> = segments.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let whole = decode(RemoteCommandVersion::V4, &Limits::default(), &chunks);
        // Chunking invariance holds for broken input too, up to the error.
        let pieces = split(&chunks, &cuts);
        let split_result = decode(RemoteCommandVersion::V4, &Limits::default(), &pieces);
        let kind = |r: &Result<(), _>| r.as_ref().err().map(std::mem::discriminant);
        prop_assert_eq!(kind(&split_result.1), kind(&whole.1));
    }
}
