//! The error stream/channel: how the command ended.
//!
//! Protocols v1–v3 write plain text there on failure and nothing on success.
//! From v4 on the upstream writes exactly one `metav1.Status` object:
//!
//! ```json
//! {"metadata":{},"status":"Success"}
//! {"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: …",
//!  "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}
//! ```
//!
//! (client-go's `StatusCause.Type` serialises as `"reason"`, and the client
//! parses the code with `strconv.ParseUint(…, 10, 8)`, so codes are `u8`.)

use serde::Deserialize;

/// How the command ended, as reported on the error stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// `status: Success` (v4+).
    Success,
    /// `reason: NonZeroExitCode` with an `ExitCode` cause.
    ExitCode(u8),
    /// Anything else: an `InternalError` Status, plain text (v1–v3, where
    /// `reason` is `None`), or a Status we could not make sense of.
    Failure {
        reason: Option<String>,
        message: String,
    },
}

impl ExitStatus {
    /// The process exit code kubectl reports for this status: 0 for success,
    /// the code for `NonZeroExitCode`, 1 for other failures (kubectl prints the
    /// message and exits 1).
    pub fn code(&self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::ExitCode(code) => *code,
            ExitStatus::Failure { .. } => 1,
        }
    }

    /// Encodes this status as the `metav1.Status` JSON a v4/v5 upstream writes
    /// on the error stream (used by the test upstream, and by the core to tell
    /// kubectl why a session was ended).
    pub fn to_status_json(&self) -> String {
        match self {
            ExitStatus::Success => r#"{"metadata":{},"status":"Success"}"#.to_string(),
            ExitStatus::ExitCode(code) => {
                let message = format!("command terminated with non-zero exit code: error executing command [], exit code {code}");
                serde_json::json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
                })
                .to_string()
            }
            ExitStatus::Failure { reason, message } => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason.as_deref().unwrap_or("InternalError"),
                "code": 500,
            })
            .to_string(),
        }
    }

    /// Interprets one decoded `metav1.Status` object.
    fn from_status(status: WireStatus) -> ExitStatus {
        if status.status.as_deref() == Some("Success") {
            return ExitStatus::Success;
        }
        if status.reason.as_deref() == Some("NonZeroExitCode") {
            let code = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_deref())
                .and_then(|m| m.parse::<u8>().ok());
            if let Some(code) = code {
                return ExitStatus::ExitCode(code);
            }
        }
        ExitStatus::Failure {
            reason: status.reason,
            message: status.message.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct WireStatus {
    status: Option<String>,
    message: Option<String>,
    reason: Option<String>,
    details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    causes: Vec<WireCause>,
}

#[derive(Deserialize)]
struct WireCause {
    reason: Option<String>,
    message: Option<String>,
}

/// Collects the bytes of the error stream and turns them into an
/// [`ExitStatus`].
///
/// In Status mode (v4+) a status is reported as soon as one complete JSON
/// value has arrived, however it was split. In text mode (v1–v3) the whole
/// stream is the message, reported by [`StatusParser::finish`] when the
/// stream ends. Input beyond `max` bytes is discarded (the message is
/// truncated, never grown without bound).
#[derive(Debug)]
pub struct StatusParser {
    json: bool,
    max: usize,
    buf: Vec<u8>,
    truncated: bool,
}

impl StatusParser {
    /// `json`: the negotiated version carries a `metav1.Status` (v4+).
    pub fn new(json: bool, max: usize) -> Self {
        StatusParser {
            json,
            max,
            buf: Vec::new(),
            truncated: false,
        }
    }

    /// Feeds bytes of the error stream; returns a status once one is complete.
    pub fn push(&mut self, bytes: &[u8]) -> Option<ExitStatus> {
        let room = self.max.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.buf
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        if !self.json {
            return None;
        }
        let start = self.buf.iter().position(|b| !b.is_ascii_whitespace())?;
        let mut values = serde_json::Deserializer::from_slice(self.buf.get(start..)?)
            .into_iter::<serde_json::Value>();
        match values.next()? {
            Ok(value) => {
                self.buf.clear();
                Some(match serde_json::from_value::<WireStatus>(value) {
                    Ok(status) => ExitStatus::from_status(status),
                    Err(_) => ExitStatus::Failure {
                        reason: None,
                        message: "malformed Status on the error stream".to_string(),
                    },
                })
            }
            Err(e) if e.is_eof() && !self.truncated => None,
            Err(_) => Some(self.take_as_text()),
        }
    }

    /// The stream ended: whatever is left is reported (text mode: the
    /// message; Status mode: an incomplete value, reported as text).
    pub fn finish(&mut self) -> Option<ExitStatus> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
            return None;
        }
        Some(self.take_as_text())
    }

    fn take_as_text(&mut self) -> ExitStatus {
        let mut message = String::from_utf8_lossy(&self.buf).trim_end().to_string();
        if self.truncated {
            message.push_str(" [truncated]");
        }
        self.buf.clear();
        self.truncated = false;
        ExitStatus::Failure {
            reason: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes from kubelet's remotecommand v4 `writeStatus` as serialised by
    // apimachinery (see docs/protocols.md, "Error stream").
    const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;
    const EXIT_3: &[u8] = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;

    #[test]
    fn success_and_exit_code_are_decoded() {
        assert_eq!(
            StatusParser::new(true, 1024).push(SUCCESS),
            Some(ExitStatus::Success)
        );
        assert_eq!(
            StatusParser::new(true, 1024).push(EXIT_3),
            Some(ExitStatus::ExitCode(3))
        );
    }

    #[test]
    fn a_status_split_anywhere_is_reported_once_complete() {
        for cut in 0..=EXIT_3.len() {
            let mut p = StatusParser::new(true, 1024);
            let first = p.push(&EXIT_3[..cut]);
            let second = p.push(&EXIT_3[cut..]);
            let got: Vec<_> = first.into_iter().chain(second).collect();
            assert_eq!(got, vec![ExitStatus::ExitCode(3)], "cut at {cut}");
        }
    }

    #[test]
    fn internal_error_keeps_reason_and_message() {
        let json = br#"{"metadata":{},"status":"Failure","message":"container not found","reason":"InternalError","code":500}"#;
        assert_eq!(
            StatusParser::new(true, 1024).push(json),
            Some(ExitStatus::Failure {
                reason: Some("InternalError".into()),
                message: "container not found".into()
            })
        );
    }

    #[test]
    fn an_exit_code_that_is_not_a_u8_is_a_failure() {
        let json = br#"{"status":"Failure","reason":"NonZeroExitCode","message":"m","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#;
        let got = StatusParser::new(true, 1024).push(json);
        assert!(matches!(got, Some(ExitStatus::Failure { .. })), "{got:?}");
    }

    #[test]
    fn text_mode_reports_at_the_end_of_the_stream() {
        let mut p = StatusParser::new(false, 1024);
        assert_eq!(p.push(b"error: command "), None);
        assert_eq!(p.push(b"not found\n"), None);
        assert_eq!(
            p.finish(),
            Some(ExitStatus::Failure {
                reason: None,
                message: "error: command not found".into()
            })
        );
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn oversized_input_is_truncated_not_buffered() {
        let mut p = StatusParser::new(false, 8);
        p.push(&[b'x'; 100]);
        assert_eq!(
            p.finish(),
            Some(ExitStatus::Failure {
                reason: None,
                message: "xxxxxxxx [truncated]".into()
            })
        );
    }

    #[test]
    fn garbage_in_status_mode_is_reported_as_text() {
        let got = StatusParser::new(true, 1024).push(b"not json");
        assert_eq!(
            got,
            Some(ExitStatus::Failure {
                reason: None,
                message: "not json".into()
            })
        );
    }

    #[test]
    fn encoded_statuses_round_trip() {
        for s in [
            ExitStatus::Success,
            ExitStatus::ExitCode(42),
            ExitStatus::Failure {
                reason: Some("InternalError".into()),
                message: "boom".into(),
            },
        ] {
            let json = s.to_status_json();
            assert_eq!(StatusParser::new(true, 4096).push(json.as_bytes()), Some(s));
        }
    }
}
