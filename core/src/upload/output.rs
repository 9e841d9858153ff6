//! What an [`super::Upload`] hands back to its driver.

use super::config::RecorderAddr;
use super::failover::{AttemptId, AttemptRecord, Protocol, UploadFailure};
use bytes::Bytes;
use std::fmt;

/// One output of an upload, from [`super::Upload::poll_output`].
///
/// Every `Connect` is eventually followed by exactly one `Close` for the
/// same attempt (after success, failure or abandonment); the adapter drops
/// whatever it holds for that attempt then (a dial in progress, the h2
/// connection, the socket).
///
/// `Debug` redacts the bearer token (in `Probe`, `StartV2` and `StartV1`),
/// so outputs can be logged as they are.
#[derive(Clone, PartialEq, Eq)]
pub enum UploadOutput {
    /// Open a connection to `recorder` for `attempt`. [`Protocol::V2`]:
    /// HTTP/2 (h2c with prior knowledge on `http://`; on `https://` TLS
    /// with ALPN `h2`, `http/1.1` — if ALPN does not pick `h2`, report
    /// `handle_connected` and then `handle_stream_error`, which falls back
    /// to v1). [`Protocol::V1`]: a raw HTTP/1.1 byte stream (on `https://`,
    /// TLS with ALPN `http/1.1`). Report `handle_connected` or
    /// `handle_connect_failed`.
    Connect {
        attempt: AttemptId,
        recorder: RecorderAddr,
        protocol: Protocol,
    },
    /// v2: send this `HEAD /v2/record` request over HTTP/2 and report its
    /// response with `handle_probe_response` (or `handle_stream_error`).
    Probe {
        attempt: AttemptId,
        request: RequestHead,
    },
    /// v2: send this `POST /v2/record` request over HTTP/2 on the probe's
    /// connection, keep its body stream open for `Send`s, and report the
    /// response head (`handle_v2_response_head`), its body
    /// (`handle_v2_body`) and its end (`handle_response_end`).
    StartV2 {
        attempt: AttemptId,
        request: RequestHead,
    },
    /// v1: write these exact bytes (the request head) and report every byte
    /// read back with `handle_v1_bytes`, and EOF with `handle_response_end`.
    StartV1 { attempt: AttemptId, head: Bytes },
    /// The upload is open: cast bytes flow to `recorder` from now on. For
    /// logs, and for a fail-closed policy that waits for a recorder before
    /// letting a session start. If this attempt fails before any cast byte
    /// was sent on it, failover goes on and another `Started` may follow.
    Started {
        attempt: AttemptId,
        recorder: RecorderAddr,
        protocol: Protocol,
    },
    /// Write these bytes to the request body, in order. v2: cast bytes as
    /// pushed (write them to the h2 send stream); v1: already chunk-framed
    /// (write them to the socket as they are).
    Send { attempt: AttemptId, bytes: Bytes },
    /// The request body is complete. v2: end the h2 send stream (`END_STREAM`);
    /// v1: the terminal chunk was the last `Send` — flush, but do not
    /// half-close the socket (some servers treat that as an abort). Keep
    /// reading the response.
    EndStream { attempt: AttemptId },
    /// Drop everything held for `attempt`.
    Close { attempt: AttemptId },
    /// An attempt failed (it is also in [`super::Upload::attempts`]); the
    /// record says what happens next. For logs as it happens.
    AttemptFailed(AttemptRecord),
    /// The recorder confirmed the whole recording (`bytes` cast bytes). The
    /// last output.
    Completed { bytes: u64 },
    /// The upload failed for good. The last output.
    Failed(UploadFailure),
}

/// An HTTP/2 request for the adapter to send: `:method`, `:path`,
/// `:authority` (and `:scheme` from the recorder's address) plus regular
/// headers (lower-case names). `Debug` redacts `authorization`.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: &'static str,
    pub path: &'static str,
    pub authority: String,
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if n == "authorization" {
                    "<redacted>"
                } else {
                    v
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("authority", &self.authority)
            .field("headers", &headers)
            .finish()
    }
}

/// An HTTP/1.1 request head with the `Authorization` value redacted.
struct RedactedHead<'a>(&'a Bytes);

impl fmt::Debug for RedactedHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(self.0);
        let lines: Vec<&str> = text
            .split_inclusive("\r\n")
            .map(|line| {
                if line.len() > 14
                    && line
                        .get(..14)
                        .is_some_and(|n| n.eq_ignore_ascii_case("authorization:"))
                {
                    "Authorization: <redacted>\r\n"
                } else {
                    line
                }
            })
            .collect();
        write!(f, "{:?}", lines.concat())
    }
}

impl fmt::Debug for UploadOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadOutput::Connect {
                attempt,
                recorder,
                protocol,
            } => f
                .debug_struct("Connect")
                .field("attempt", attempt)
                .field("recorder", recorder)
                .field("protocol", protocol)
                .finish(),
            UploadOutput::Probe { attempt, request } => f
                .debug_struct("Probe")
                .field("attempt", attempt)
                .field("request", request)
                .finish(),
            UploadOutput::StartV2 { attempt, request } => f
                .debug_struct("StartV2")
                .field("attempt", attempt)
                .field("request", request)
                .finish(),
            UploadOutput::StartV1 { attempt, head } => f
                .debug_struct("StartV1")
                .field("attempt", attempt)
                .field("head", &RedactedHead(head))
                .finish(),
            UploadOutput::Started {
                attempt,
                recorder,
                protocol,
            } => f
                .debug_struct("Started")
                .field("attempt", attempt)
                .field("recorder", recorder)
                .field("protocol", protocol)
                .finish(),
            UploadOutput::Send { attempt, bytes } => f
                .debug_struct("Send")
                .field("attempt", attempt)
                .field("bytes", bytes)
                .finish(),
            UploadOutput::EndStream { attempt } => f
                .debug_struct("EndStream")
                .field("attempt", attempt)
                .finish(),
            UploadOutput::Close { attempt } => {
                f.debug_struct("Close").field("attempt", attempt).finish()
            }
            UploadOutput::AttemptFailed(record) => {
                f.debug_tuple("AttemptFailed").field(record).finish()
            }
            UploadOutput::Completed { bytes } => {
                f.debug_struct("Completed").field("bytes", bytes).finish()
            }
            UploadOutput::Failed(failure) => f.debug_tuple("Failed").field(failure).finish(),
        }
    }
}

/// Why an upload asked to be woken ([`super::Upload::timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The current attempt must have opened the upload by then
    /// ([`super::UploadConfig::attempt_budget`]); then the next recorder.
    AttemptBudget,
    /// All attempts together must have opened the upload by then
    /// ([`super::UploadConfig::overall_budget`]); then the upload fails.
    OverallBudget,
    /// v1: no `100 Continue` yet; the body is sent anyway then
    /// ([`super::UploadConfig::continue_wait`]).
    ContinueWait,
    /// v2: the upload fails unless an ack frame arrives by then
    /// ([`super::UploadConfig::ack_window`]).
    AckWindow,
    /// v1: the body ended; the final response must arrive by then
    /// ([`super::UploadConfig::final_response_wait`]).
    FinalResponse,
}

/// Where an upload stands ([`super::Upload::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UploadState {
    /// Trying recorders; cast bytes are buffered.
    Connecting,
    /// The body is streaming.
    Open,
    /// The body ended; waiting for the recorder's confirmation.
    Finishing,
    Completed,
    Failed,
}

/// Byte counts of an upload ([`super::Upload::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Cast bytes accepted by `push_cast`.
    pub accepted: u64,
    /// Cast bytes handed to the adapter (without v1 chunk framing).
    pub sent: u64,
    /// Cast bytes the recorder confirmed.
    pub acked: u64,
    /// Cast bytes pushed after `finish` or after the upload ended, and so
    /// not uploaded (a caller bug, or a session continuing unrecorded after
    /// a reported failure).
    pub discarded: u64,
}
