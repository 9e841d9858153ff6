//! Property tests for the WebSocket decoder: any chunking of a valid
//! two-direction session gives the same coalesced events (the sans-IO
//! contract), and no input — random or mutated — makes it panic.

mod ws_support;

use kubecast_core::exec::{push_coalesced, OwnedExecEvent};
use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{
    base64, encode_close, encode_frame, encode_ping, MessageReader, Opcode, WsDecoder,
};
use kubecast_core::{DataStream, ExitStatus, Limits, Side};
use proptest::prelude::*;

const PROTOCOLS: [WsProtocol; 5] = [
    WsProtocol::Channel,
    WsProtocol::Base64Channel,
    WsProtocol::V4Channel,
    WsProtocol::V4Base64Channel,
    WsProtocol::V5Channel,
];

/// One generated data message.
#[derive(Debug, Clone)]
struct Msg {
    from_client: bool,
    /// Index into the channels this side writes (plus an ignored one).
    channel: u8,
    payload: Vec<u8>,
    /// Where the encoded body is cut into fragments.
    cuts: Vec<usize>,
    /// Put a ping after each fragment but the last.
    pings: bool,
    text: bool,
    key: [u8; 4],
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        0u8..3,
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(0usize..400, 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 4]>(),
    )
        .prop_map(
            |(from_client, channel, payload, cuts, pings, text, key)| Msg {
                from_client,
                channel,
                payload,
                cuts,
                pings,
                text,
                key,
            },
        )
}

/// Encodes one message as (side, frames), fragmented at `cuts`.
fn encode(protocol: WsProtocol, m: &Msg) -> (Side, Vec<u8>) {
    let (side, channel) = match (m.from_client, m.channel) {
        (true, 0 | 1) => (Side::Client, 0),
        (true, _) => (Side::Client, 7), // ignored
        (false, 0) => (Side::Upstream, 1),
        (false, 1) => (Side::Upstream, 2),
        (false, _) => (Side::Upstream, 9), // ignored
    };
    let mut body = Vec::new();
    if protocol.base64() {
        body.push(b'0' + channel);
        base64::encode_into(&m.payload, &mut body);
    } else {
        body.push(channel);
        body.extend_from_slice(&m.payload);
    }
    let mask = m.from_client.then_some(m.key);
    let mut cuts: Vec<usize> = m.cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(body.len());
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &end) in cuts.iter().enumerate() {
        let last = i + 1 == cuts.len();
        let opcode = match (i, m.text) {
            (0, true) => Opcode::Text,
            (0, false) => Opcode::Binary,
            _ => Opcode::Continuation,
        };
        encode_frame(&mut out, opcode, last, mask, &body[start..end]);
        if m.pings && !last {
            encode_ping(&mut out, b"ping", mask);
        }
        start = end;
    }
    (side, out)
}

/// A whole session: initial message, generated messages, resize, Status,
/// close signal (v5), close frame.
fn session(protocol: WsProtocol, messages: &[Msg]) -> Vec<(Side, Vec<u8>)> {
    use ws_support::{from_client, from_upstream};
    let mut steps = vec![(Side::Upstream, from_upstream(protocol, 1, b""))];
    steps.push((
        Side::Client,
        from_client(protocol, 4, b"{\"Width\":80,\"Height\":24}\n"),
    ));
    steps.extend(messages.iter().map(|m| encode(protocol, m)));
    if protocol.close_signal() {
        steps.push((Side::Client, from_client(protocol, 255, &[0])));
    }
    let status = if protocol.status_json() {
        ExitStatus::ExitCode(2).to_status_json()
    } else {
        "oops".into()
    };
    steps.push((
        Side::Upstream,
        from_upstream(protocol, 3, status.as_bytes()),
    ));
    let mut close = Vec::new();
    encode_close(&mut close, Some(1000), "", None);
    steps.push((Side::Upstream, close));
    steps
}

/// Decodes `steps`, each cut into chunks of the cycled `sizes`.
fn run(protocol: WsProtocol, steps: &[(Side, Vec<u8>)], sizes: &[usize]) -> Vec<OwnedExecEvent> {
    let mut decoder = WsDecoder::new(protocol, &Limits::default());
    let mut events = Vec::new();
    let mut sizes = sizes.iter().cycle();
    for (side, bytes) in steps {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(usize::MAX)
                .clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            decoder
                .decode(*side, chunk, |e| push_coalesced(&mut events, &e))
                .unwrap();
            rest = tail;
        }
        assert_eq!(decoder.partial_frame_len(*side), 0);
    }
    decoder
        .finish(Side::Client, |e| push_coalesced(&mut events, &e))
        .unwrap();
    decoder
        .finish(Side::Upstream, |e| push_coalesced(&mut events, &e))
        .unwrap();
    events
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(
        protocol in prop::sample::select(&PROTOCOLS[..]),
        messages in prop::collection::vec(msg(), 0..8),
        sizes in prop::collection::vec(1usize..64, 1..16),
    ) {
        let steps = session(protocol, &messages);
        let whole = run(protocol, &steps, &[usize::MAX]);
        prop_assert_eq!(&run(protocol, &steps, &sizes), &whole);
        prop_assert_eq!(&run(protocol, &steps, &[1]), &whole);
        // And the payloads are what was sent, per stream.
        let sent = |client: bool, channels: &[u8]| -> Vec<u8> {
            messages.iter().filter(|m| m.from_client == client && channels.contains(&m.channel))
                .flat_map(|m| m.payload.clone()).collect()
        };
        let got = |stream: DataStream| -> Vec<u8> {
            whole.iter().filter_map(|e| match e {
                OwnedExecEvent::Data { stream: s, bytes } if *s == stream => Some(bytes.clone()),
                _ => None,
            }).flatten().collect()
        };
        prop_assert_eq!(got(DataStream::Stdin), sent(true, &[0, 1]));
        prop_assert_eq!(got(DataStream::Stdout), sent(false, &[0]));
        prop_assert_eq!(got(DataStream::Stderr), sent(false, &[1]));
    }

    #[test]
    fn random_bytes_never_panic(
        protocol in prop::sample::select(&PROTOCOLS[..]),
        chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)), 0..16),
    ) {
        let limits = Limits { max_ws_message: 4096, ..Limits::default() };
        let mut decoder = WsDecoder::new(protocol, &limits);
        let mut reader = MessageReader::new(&limits);
        for (client, bytes) in &chunks {
            let side = if *client { Side::Client } else { Side::Upstream };
            let _ = decoder.decode(side, bytes, |_| {});
            reader.push(bytes);
            while let Ok(Some(_)) = reader.next_message() {}
        }
        let _ = decoder.finish(Side::Client, |_| {});
        let _ = decoder.finish(Side::Upstream, |_| {});
    }

    #[test]
    fn mutated_sessions_never_panic(
        protocol in prop::sample::select(&PROTOCOLS[..]),
        messages in prop::collection::vec(msg(), 0..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut steps = session(protocol, &messages);
        let total: usize = steps.iter().map(|(_, b)| b.len()).sum();
        for (index, xor) in flips {
            let mut at = index.index(total);
            for (_, bytes) in steps.iter_mut() {
                if at < bytes.len() {
                    bytes[at] ^= xor;
                    break;
                }
                at -= bytes.len();
            }
        }
        let mut decoder = WsDecoder::new(protocol, &Limits::default());
        for (side, bytes) in &steps {
            let _ = decoder.decode(*side, bytes, |_| {});
        }
        let _ = decoder.finish(Side::Upstream, |_| {});
    }
}
