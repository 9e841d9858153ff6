//! The HTTP/1.1 upgrade that starts an exec/attach/port-forward session.
//!
//! From the request head we learn what is being asked for (resource, pod,
//! container, command, which streams) and which protocol versions the client
//! offers; from the `101 Switching Protocols` head, what the upstream chose.
//! Both are parsed with `httparse`; anything that is not a well-formed
//! upgrade is a typed [`HandshakeError`], never a guess.

use std::fmt;

/// Largest request or response head we accept. kubectl's are under 1 KiB.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Most header lines in one head.
const MAX_HEADERS: usize = 100;
/// Most `command=` arguments kept from one query.
pub const MAX_COMMAND_ARGS: usize = 4096;

/// The prefix of a browser's bearer-token-in-subprotocol offer. Such offers
/// carry a credential: they are dropped from [`UpgradeRequest::offered`] and
/// never recorded or logged.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// What the request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `…/pods/{pod}/exec`: run a command.
    Exec,
    /// `…/pods/{pod}/attach`: attach to the container's main process.
    Attach,
    /// `…/pods/{pod}/portforward`: passed through, never decoded.
    PortForward,
    /// Any other upgrade.
    Other,
}

/// The streaming protocol named by the `Upgrade` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// `Upgrade: SPDY/3.1`.
    Spdy,
    /// `Upgrade: websocket`.
    WebSocket,
}

/// remotecommand protocol versions over SPDY (`X-Stream-Protocol-Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoteCommandVersion {
    /// `channel.k8s.io`: error stream is plain text, no resize stream.
    V1,
    /// `v2.channel.k8s.io`: streams are created only when requested.
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a `metav1.Status`.
    V4,
    /// `v5.channel.k8s.io`: adds the stdin close signal (WebSocket).
    V5,
}

impl RemoteCommandVersion {
    /// The protocol string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteCommandVersion::V1 => "channel.k8s.io",
            RemoteCommandVersion::V2 => "v2.channel.k8s.io",
            RemoteCommandVersion::V3 => "v3.channel.k8s.io",
            RemoteCommandVersion::V4 => "v4.channel.k8s.io",
            RemoteCommandVersion::V5 => "v5.channel.k8s.io",
        }
    }

    /// Parses a protocol string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "channel.k8s.io" => RemoteCommandVersion::V1,
            "v2.channel.k8s.io" => RemoteCommandVersion::V2,
            "v3.channel.k8s.io" => RemoteCommandVersion::V3,
            "v4.channel.k8s.io" => RemoteCommandVersion::V4,
            "v5.channel.k8s.io" => RemoteCommandVersion::V5,
            _ => return None,
        })
    }

    /// Whether the error stream carries a `metav1.Status` (v4+) rather than
    /// plain text.
    pub fn status_json(self) -> bool {
        self >= RemoteCommandVersion::V4
    }
}

/// The Kubernetes channel protocols over WebSocket (`Sec-WebSocket-Protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsProtocol {
    /// `channel.k8s.io`, or no subprotocol at all (the kubelet treats `""`
    /// the same): raw channel byte, plain-text errors.
    Channel,
    /// `base64.channel.k8s.io`: ASCII channel digit, base64 payload, text frames.
    Base64Channel,
    /// `v4.channel.k8s.io`: raw, `metav1.Status` on the error channel.
    V4Channel,
    /// `v4.base64.channel.k8s.io`: base64 framing with v4 semantics.
    V4Base64Channel,
    /// `v5.channel.k8s.io`: v4 plus the close signal on channel 255.
    V5Channel,
}

impl WsProtocol {
    /// The subprotocol string on the wire (`""` is reported as `channel.k8s.io`).
    pub fn as_str(self) -> &'static str {
        match self {
            WsProtocol::Channel => "channel.k8s.io",
            WsProtocol::Base64Channel => "base64.channel.k8s.io",
            WsProtocol::V4Channel => "v4.channel.k8s.io",
            WsProtocol::V4Base64Channel => "v4.base64.channel.k8s.io",
            WsProtocol::V5Channel => "v5.channel.k8s.io",
        }
    }

    /// Parses a subprotocol string; `""` is the kubelet's default,
    /// `channel.k8s.io`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "channel.k8s.io" => WsProtocol::Channel,
            "base64.channel.k8s.io" => WsProtocol::Base64Channel,
            "v4.channel.k8s.io" => WsProtocol::V4Channel,
            "v4.base64.channel.k8s.io" => WsProtocol::V4Base64Channel,
            "v5.channel.k8s.io" => WsProtocol::V5Channel,
            _ => return None,
        })
    }

    /// Payloads are base64 with an ASCII channel digit.
    pub fn base64(self) -> bool {
        matches!(
            self,
            WsProtocol::Base64Channel | WsProtocol::V4Base64Channel
        )
    }

    /// The error channel carries a `metav1.Status` (v4+).
    pub fn status_json(self) -> bool {
        !matches!(self, WsProtocol::Channel | WsProtocol::Base64Channel)
    }

    /// Channel 255 is the close signal (v5 only).
    pub fn close_signal(self) -> bool {
        self == WsProtocol::V5Channel
    }
}

/// The protocol and version both sides settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Negotiated {
    Spdy(RemoteCommandVersion),
    WebSocket(WsProtocol),
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Negotiated::Spdy(v) => write!(f, "spdy/{}", v.as_str()),
            Negotiated::WebSocket(p) => write!(f, "websocket/{}", p.as_str()),
        }
    }
}

/// A parsed upgrade request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `GET` (WebSocket) or `POST` (SPDY), as sent.
    pub method: String,
    /// The request target, as sent (path and query).
    pub target: String,
    /// What the request is for.
    pub resource: Resource,
    /// Namespace, for pod subresources.
    pub namespace: Option<String>,
    /// Pod name, for pod subresources.
    pub pod: Option<String>,
    /// `container=`.
    pub container: Option<String>,
    /// `command=`, once per argument, in order.
    pub command: Vec<String>,
    /// `stdin=true` (false values are omitted by clients).
    pub stdin: bool,
    /// `stdout=true`.
    pub stdout: bool,
    /// `stderr=true` (kubectl drops it when a tty is requested).
    pub stderr: bool,
    /// `tty=true`.
    pub tty: bool,
    /// The `Upgrade` protocol.
    pub protocol: StreamProtocol,
    /// Offered versions in client order, without bearer-token subprotocols.
    pub offered: Vec<String>,
    /// Whether a bearer token was offered as a WebSocket subprotocol.
    pub bearer_subprotocol: bool,
    /// `Kubectl-Command`, when kubectl sent it.
    pub kubectl_command: Option<String>,
    /// `Kubectl-Session`, when kubectl sent it.
    pub kubectl_session: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

/// What the upstream answered to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeResponse {
    /// `101 Switching Protocols` with the version the upstream chose.
    Switched(Negotiated),
    /// Any other status: no upgrade happened (kubectl falls back from
    /// WebSocket to SPDY on this). The connection carries HTTP from here.
    Refused { status: u16 },
}

/// A head that was parsed, and how many bytes of the input it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    pub head_len: usize,
}

/// Why a head is not a usable upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    #[error("HTTP head longer than {MAX_HEAD_LEN} bytes")]
    HeadTooLarge,
    #[error("not an upgrade request: {0}")]
    NotUpgrade(&'static str),
    #[error("unsupported Upgrade protocol {0:?}")]
    UnknownProtocol(String),
    #[error("bad request target: {0}")]
    BadTarget(String),
    #[error("101 response without a usable Upgrade header")]
    ResponseProtocolMismatch,
    #[error("upstream chose a version the client did not offer: {0:?}")]
    NotOffered(String),
    #[error("upstream chose an unknown version: {0:?}")]
    UnknownVersion(String),
}

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{parse_request, parse_response};
