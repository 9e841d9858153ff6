//! One upgraded connection from its first byte: the HTTP heads, then frames.

use super::{DecodeError, ExecDecoder, ExecEvent, Side};
use crate::handshake::{
    self, HandshakeError, Negotiated, Resource, UpgradeRequest, UpgradeResponse, MAX_HEAD_LEN,
};
use crate::Limits;

/// Client bytes held between the request head and the `101` (clients wait
/// for the answer, so anything here is a peer speaking out of turn).
const MAX_EARLY_CLIENT_BYTES: usize = 64 * 1024;

/// What a [`ConnectionDecoder`] reports.
#[derive(Debug)]
pub enum ConnectionEvent<'a> {
    /// The client's request head is complete.
    Request(&'a UpgradeRequest),
    /// The upstream answered; after `Switched`, exec events follow.
    Response(&'a UpgradeResponse),
    /// An event of the upgraded exec/attach stream.
    Exec(ExecEvent<'a>),
    /// From here on the bytes are not decoded (port-forward, other
    /// upgrades, refused upgrades): the reason says which.
    PassThrough(PassThrough),
}

/// Why a connection is passed through without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassThrough {
    /// Port-forward carries arbitrary TCP payload: never decoded.
    PortForward,
    /// An upgrade to something that is not exec/attach.
    OtherResource,
    /// The upstream did not switch protocols (the connection stays HTTP).
    Refused { status: u16 },
    /// The connection starts with an ordinary HTTP request, not an upgrade.
    NotUpgrade,
}

/// Why a connection could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("request head: {0}")]
    Request(HandshakeError),
    #[error("response head: {0}")]
    Response(HandshakeError),
    #[error("the upstream sent bytes before the request head was complete")]
    UpstreamSpokeFirst,
    #[error(
        "the client sent more than {MAX_EARLY_CLIENT_BYTES} bytes before the upgrade was answered"
    )]
    EarlyClientBytes,
    #[error("the connection ended before the upgrade completed")]
    EndedDuringHandshake,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl ConnectionError {
    /// The side that ended its upgraded stream inside a frame, if that is
    /// what this error is ([`DecodeError::is_cut`]).
    pub fn cut_by(&self) -> Option<Side> {
        match self {
            ConnectionError::Decode(e) if e.is_cut() => Some(e.side()),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitingRequest {
        head: Vec<u8>,
    },
    AwaitingResponse {
        head: Vec<u8>,
        early_client: Vec<u8>,
    },
    Decoding(Box<ExecDecoder>),
    PassThrough,
    Failed(ConnectionError),
}

/// Decodes one connection, both directions, from the request line on.
///
/// This is the front end of a recorded session: it splits the HTTP heads off
/// each direction (in whatever chunks they arrive), decides from them whether
/// the stream is exec/attach (decoded) or not (passed through), and then
/// drives an [`ExecDecoder`]. Errors are sticky.
#[derive(Debug)]
pub struct ConnectionDecoder {
    limits: Limits,
    request: Option<UpgradeRequest>,
    response: Option<UpgradeResponse>,
    state: State,
}

impl ConnectionDecoder {
    pub fn new(limits: Limits) -> Self {
        ConnectionDecoder {
            limits,
            request: None,
            response: None,
            state: State::AwaitingRequest { head: Vec::new() },
        }
    }

    /// The request head, once parsed.
    pub fn request(&self) -> Option<&UpgradeRequest> {
        self.request.as_ref()
    }

    /// The negotiated protocol, once the upstream switched.
    pub fn negotiated(&self) -> Option<Negotiated> {
        match self.response {
            Some(UpgradeResponse::Switched(n)) => Some(n),
            _ => None,
        }
    }

    /// How far `side`'s stream is from a frame boundary (always at one
    /// before the upgrade and for pass-through connections).
    pub fn frame_remaining(&self, side: Side) -> super::FrameRemaining {
        match &self.state {
            State::Decoding(d) => d.frame_remaining(side),
            _ => super::FrameRemaining::AtBoundary,
        }
    }

    /// The frames that tell the client `message` and end the session, in the
    /// negotiated protocol (empty before the upgrade or when undecodable).
    pub fn farewell(&self, message: &str) -> Vec<u8> {
        match (&self.state, self.negotiated()) {
            (State::Decoding(d), Some(negotiated)) => super::farewell(d, negotiated, message),
            _ => Vec::new(),
        }
    }

    /// Bytes already fed from `side` that belong to an unfinished frame (0
    /// before the upgrade and for pass-through connections).
    pub fn partial_frame_len(&self, side: Side) -> usize {
        match &self.state {
            State::Decoding(d) => d.partial_frame_len(side),
            _ => 0,
        }
    }

    /// Feeds bytes sent by `side`.
    pub fn handle<F>(
        &mut self,
        side: Side,
        bytes: &[u8],
        mut sink: F,
    ) -> Result<(), ConnectionError>
    where
        F: FnMut(ConnectionEvent<'_>),
    {
        let result = self.step(side, bytes, &mut sink);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    /// `side` reached end of file.
    pub fn finish<F>(&mut self, side: Side, mut sink: F) -> Result<(), ConnectionError>
    where
        F: FnMut(ConnectionEvent<'_>),
    {
        let result = match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Decoding(d) => d
                .finish(side, |e| sink(ConnectionEvent::Exec(e)))
                .map_err(ConnectionError::from),
            State::PassThrough => Ok(()),
            State::AwaitingRequest { head } if head.is_empty() => Ok(()),
            State::AwaitingRequest { .. } | State::AwaitingResponse { .. } => {
                Err(ConnectionError::EndedDuringHandshake)
            }
        };
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn step<F>(&mut self, side: Side, bytes: &[u8], sink: &mut F) -> Result<(), ConnectionError>
    where
        F: FnMut(ConnectionEvent<'_>),
    {
        match (&mut self.state, side) {
            (State::Failed(e), _) => Err(e.clone()),
            (State::PassThrough, _) => Ok(()),
            (State::Decoding(d), side) => {
                Ok(d.decode(side, bytes, |e| sink(ConnectionEvent::Exec(e)))?)
            }
            (State::AwaitingRequest { .. }, Side::Upstream) if !bytes.is_empty() => {
                Err(ConnectionError::UpstreamSpokeFirst)
            }
            (State::AwaitingRequest { head }, _) => {
                let start = head.len();
                head.extend_from_slice(
                    bytes
                        .get(..bytes.len().min(MAX_HEAD_LEN + 1))
                        .unwrap_or_default(),
                );
                let parsed = match handshake::parse_request(head) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => return Ok(()),
                    // A well-formed request that is not an upgrade (kubectl's
                    // discovery GETs on a kept-alive connection): HTTP, not
                    // ours to decode.
                    Err(HandshakeError::NotUpgrade(_)) => {
                        self.state = State::PassThrough;
                        sink(ConnectionEvent::PassThrough(PassThrough::NotUpgrade));
                        return Ok(());
                    }
                    Err(e) => return Err(ConnectionError::Request(e)),
                };
                // Everything after the head in this read is early body bytes.
                let rest = bytes
                    .get(parsed.head_len.saturating_sub(start)..)
                    .unwrap_or_default();
                let request = self.request.insert(parsed.value);
                sink(ConnectionEvent::Request(request));
                let pass = match request.resource {
                    Resource::Exec | Resource::Attach => None,
                    Resource::PortForward => Some(PassThrough::PortForward),
                    Resource::Other => Some(PassThrough::OtherResource),
                };
                if let Some(why) = pass {
                    self.state = State::PassThrough;
                    sink(ConnectionEvent::PassThrough(why));
                    return Ok(());
                }
                self.state = State::AwaitingResponse {
                    head: Vec::new(),
                    early_client: Vec::new(),
                };
                self.step(Side::Client, rest, sink)
            }
            (State::AwaitingResponse { early_client, .. }, Side::Client) => {
                if early_client.len() + bytes.len() > MAX_EARLY_CLIENT_BYTES {
                    return Err(ConnectionError::EarlyClientBytes);
                }
                early_client.extend_from_slice(bytes);
                Ok(())
            }
            (State::AwaitingResponse { head, early_client }, Side::Upstream) => {
                let start = head.len();
                head.extend_from_slice(
                    bytes
                        .get(..bytes.len().min(MAX_HEAD_LEN + 1))
                        .unwrap_or_default(),
                );
                let Some(request) = self.request.as_ref() else {
                    return Err(ConnectionError::EndedDuringHandshake);
                };
                let Some(parsed) =
                    handshake::parse_response(head, request).map_err(ConnectionError::Response)?
                else {
                    return Ok(());
                };
                let rest = bytes
                    .get(parsed.head_len.saturating_sub(start)..)
                    .unwrap_or_default();
                let early = std::mem::take(early_client);
                let response = self.response.insert(parsed.value);
                sink(ConnectionEvent::Response(response));
                match *response {
                    UpgradeResponse::Refused { status } => {
                        self.state = State::PassThrough;
                        sink(ConnectionEvent::PassThrough(PassThrough::Refused {
                            status,
                        }));
                        Ok(())
                    }
                    UpgradeResponse::Switched(negotiated) => {
                        self.state =
                            State::Decoding(Box::new(ExecDecoder::new(negotiated, &self.limits)));
                        // The upstream's bytes come first: they were sent
                        // after the 101, which the early client bytes were not
                        // answered before — but both directions are
                        // independent streams, so the order between them only
                        // affects interleaving, never content.
                        self.step(Side::Upstream, rest, sink)?;
                        self.step(Side::Client, &early, sink)
                    }
                }
            }
        }
    }
}
