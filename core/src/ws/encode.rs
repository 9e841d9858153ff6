//! Writing frames and channel messages: what an endpoint sends. Used by the
//! test upstream, and by the core to tell kubectl why a session ended.
//!
//! Clients must mask their frames and servers must not (RFC 6455 §5.1):
//! pass `Some(key)` when writing as a client, `None` as a server. The key
//! should be unpredictable (§10.3); the core takes it as an argument because
//! it owns no randomness.

use super::base64::{encode_into, encoded_len};
use super::frame::Opcode;
use crate::handshake::WsProtocol;

/// The v5 channel whose one-byte messages half-close another channel.
pub const CLOSE_SIGNAL_CHANNEL: u8 = 255;

/// Longest close reason that fits a control frame next to its status code.
const MAX_CLOSE_REASON: usize = 123;

/// Appends a frame header (§5.2) for a payload of `len` bytes, using the
/// shortest length form. The caller appends the payload, masked with the
/// same key when there is one.
pub fn encode_frame_header(
    out: &mut Vec<u8>,
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    len: u64,
) {
    let first = if fin { 0x80 } else { 0 } | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(first);
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len & (u64::MAX >> 1)).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XORs `buf`, the start of a frame's payload, with `key` in place.
fn mask_in_place(buf: &mut [u8], key: [u8; 4]) {
    let mut key8 = [0u8; 8];
    for (d, k) in key8.iter_mut().zip(key.iter().cycle()) {
        *d = *k;
    }
    let k64 = u64::from_ne_bytes(key8);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ k64).to_ne_bytes());
        }
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// Appends one complete frame.
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    encode_frame_header(out, opcode, fin, mask, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (mask, out.get_mut(start..)) {
        mask_in_place(body, key);
    }
}

/// Appends one single-frame channel message: for the raw protocols a binary
/// frame holding the channel byte and `payload`; for the base64 protocols a
/// text frame holding the ASCII digit `'0' + channel` and the padded base64
/// of `payload` (as the Kubernetes servers write them).
pub fn encode_channel_message(
    out: &mut Vec<u8>,
    protocol: WsProtocol,
    channel: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let (opcode, first, len) = if protocol.base64() {
        (
            Opcode::Text,
            b'0'.wrapping_add(channel),
            encoded_len(payload.len()),
        )
    } else {
        (Opcode::Binary, channel, payload.len())
    };
    encode_frame_header(out, opcode, true, mask, 1 + len as u64);
    let start = out.len();
    out.push(first);
    if protocol.base64() {
        encode_into(payload, out);
    } else {
        out.extend_from_slice(payload);
    }
    if let (Some(key), Some(body)) = (mask, out.get_mut(start..)) {
        mask_in_place(body, key);
    }
}

/// Appends the v5 close signal for `channel` (`[255, channel]`, binary):
/// the client's way to half-close stdin under `v5.channel.k8s.io`.
pub fn encode_close_signal(out: &mut Vec<u8>, channel: u8, mask: Option<[u8; 4]>) {
    encode_frame(
        out,
        Opcode::Binary,
        true,
        mask,
        &[CLOSE_SIGNAL_CHANNEL, channel],
    );
}

/// Appends a close frame (§5.5.1): no body when `code` is `None`, else the
/// status code and `reason`, cut to the 123 bytes a control frame has room
/// for (at a character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: Option<u16>, reason: &str, mask: Option<[u8; 4]>) {
    let Some(code) = code else {
        encode_frame(out, Opcode::Close, true, mask, &[]);
        return;
    };
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut body = Vec::with_capacity(2 + cut);
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(reason.get(..cut).unwrap_or_default().as_bytes());
    encode_frame(out, Opcode::Close, true, mask, &body);
}

/// Appends a ping frame (`payload` should be at most 125 bytes).
pub fn encode_ping(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_frame(out, Opcode::Ping, true, mask, payload);
}

/// Appends a pong frame, echoing a ping's payload (§5.5.3).
pub fn encode_pong(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_frame(out, Opcode::Pong, true, mask, payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_7_examples_are_reproduced() {
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Text, true, None, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        let mut out = Vec::new();
        encode_frame(
            &mut out,
            Opcode::Text,
            true,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Text, false, None, b"Hel");
        encode_frame(&mut out, Opcode::Continuation, true, None, b"lo");
        assert_eq!(out, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);

        let mut out = Vec::new();
        encode_ping(&mut out, b"Hello", None);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        let mut out = Vec::new();
        encode_pong(&mut out, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(
            out,
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        let mut out = Vec::new();
        encode_frame_header(&mut out, Opcode::Binary, true, None, 256);
        assert_eq!(out, [0x82, 0x7E, 0x01, 0x00]);

        let mut out = Vec::new();
        encode_frame_header(&mut out, Opcode::Binary, true, None, 65536);
        assert_eq!(out, [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0]);
    }

    #[test]
    fn channel_messages_match_the_wsstream_examples() {
        // wsstream/conn.go: "\n" on stdout is [1, 10] raw and "1Cg==" in base64.
        let mut out = Vec::new();
        encode_channel_message(&mut out, WsProtocol::Channel, 1, b"\n", None);
        assert_eq!(out, [0x82, 0x02, 1, 10]);
        let mut out = Vec::new();
        encode_channel_message(&mut out, WsProtocol::Base64Channel, 1, b"\n", None);
        assert_eq!(out, b"\x81\x051Cg==");
    }

    #[test]
    fn masked_channel_message_unmasks_to_the_plain_one() {
        let key = [9, 8, 7, 6];
        let payload: Vec<u8> = (0..100).collect();
        let mut masked = Vec::new();
        encode_channel_message(&mut masked, WsProtocol::V5Channel, 0, &payload, Some(key));
        let body = &masked[6..];
        let mut plain = Vec::new();
        super::super::frame::unmask_into(&mut plain, body, key, 0);
        assert_eq!(plain[0], 0);
        assert_eq!(&plain[1..], &payload[..]);
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        encode_close(&mut out, None, "ignored", None);
        assert_eq!(out, [0x88, 0x00]);
        let mut out = Vec::new();
        encode_close(&mut out, Some(1000), "", None);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xE8]);
        let mut out = Vec::new();
        encode_close(&mut out, Some(1011), &"é".repeat(100), None);
        assert_eq!(out[1] as usize, 2 + 122, "cut to a character boundary");
    }
}
