//! Bounds on everything a peer can make us buffer or count.

/// Upper bounds applied to wire data. Exceeding one is a typed decode error
/// that ends the one session, never the process.
///
/// The defaults are generous for real `kubectl` traffic (which stays far
/// below every one of them) and small enough that a thousand hostile sessions
/// cannot exhaust memory. Payload of stdin/stdout/stderr is never buffered —
/// it is handed on as it arrives — so only framing and the small JSON
/// channels (resize, error) are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest SPDY control frame (SYN_STREAM, SETTINGS, …) we buffer whole.
    /// Default 64 KiB; kubectl's are a few hundred bytes.
    pub max_spdy_control_frame: usize,
    /// Largest inflated SPDY name/value header block: the zlib-bomb guard.
    /// Default 256 KiB.
    pub max_header_block: usize,
    /// Most SPDY streams one connection may open. Default 16; an exec
    /// session uses at most five (error, stdin, stdout, stderr, resize).
    pub max_streams: usize,
    /// Largest WebSocket message (all fragments together). Default 32 MiB,
    /// the same limit the Kubernetes servers apply.
    pub max_ws_message: u64,
    /// Largest WebSocket control frame payload. RFC 6455 fixes it at 125.
    pub max_ws_control_payload: usize,
    /// Bytes of a JSON side channel (resize, error/status) held while waiting
    /// for the rest of a value. Default 64 KiB.
    pub max_json_channel: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_spdy_control_frame: 64 * 1024,
            max_header_block: 256 * 1024,
            max_streams: 16,
            max_ws_message: 32 * 1024 * 1024,
            max_ws_control_payload: 125,
            max_json_channel: 64 * 1024,
        }
    }
}
