//! The last words of a session the core ends: a message kubectl prints.
//!
//! When the core must end a live session (fail-closed and the recording was
//! lost), the user is told why in the protocol kubectl is speaking: the
//! message goes where the upstream reports errors — the error channel
//! (WebSocket) or error stream (SPDY) — as a `metav1.Status` from v4 on, as
//! plain text before. kubectl prints it and exits non-zero. The bytes must be
//! written at a frame boundary of the upstream→client stream
//! ([`super::FrameRemaining::AtBoundary`]).

use super::{ExecDecoder, ExitStatus, StreamKind};
use crate::handshake::Negotiated;
use crate::spdy::write_data;
use crate::ws::{encode_channel_message, encode_close};

/// The frames that tell kubectl `message` and end the stream, as the
/// upstream would write them. Empty when there is nowhere to write it (a
/// SPDY session whose client opened no error stream).
pub fn farewell(decoder: &ExecDecoder, negotiated: Negotiated, message: &str) -> Vec<u8> {
    let status = ExitStatus::Failure {
        reason: Some("InternalError".into()),
        message: message.to_string(),
    };
    let mut out = Vec::new();
    match (negotiated, decoder) {
        (Negotiated::WebSocket(protocol), _) => {
            let body = if protocol.status_json() {
                status.to_status_json()
            } else {
                message.to_string()
            };
            encode_channel_message(
                &mut out,
                protocol,
                StreamKind::Error.channel(),
                body.as_bytes(),
                None,
            );
            // The API server ends sessions with a normal closure too.
            encode_close(&mut out, Some(1000), "", None);
        }
        (Negotiated::Spdy(version), ExecDecoder::Spdy(spdy)) => {
            if let Some(id) = spdy.stream_id(StreamKind::Error) {
                let body = if version.status_json() {
                    status.to_status_json()
                } else {
                    message.to_string()
                };
                write_data(&mut out, id, body.as_bytes(), true);
            }
        }
        (Negotiated::Spdy(_), ExecDecoder::WebSocket(_)) => {}
    }
    out
}
