//! Which of the protocol versions a client offers the core can record, and
//! narrowing the offer that goes upstream to those.
//!
//! The upstream picks the version of an exec/attach session from the
//! client's offer (WebSocket `Sec-WebSocket-Protocol`, SPDY
//! `X-Stream-Protocol-Version`). If it picked one the core cannot decode,
//! the session would be found unrecordable only after it had started in the
//! container. So the recording handler looks at the offer at admission,
//! before anything goes upstream ([`admit`], [`Offer::check`]): when every offered
//! version is decodable nothing changes; when only some are, just those go
//! upstream ([`narrow`]) — the client offered them, so it speaks them, and
//! whatever the upstream picks can be recorded; when none is, the session
//! cannot be recorded at all (refused when enforced, relayed unrecorded
//! otherwise).
//!
//! What is decodable is what `kubecast_core::handshake` parses
//! ([`WsProtocol::parse`], [`RemoteCommandVersion::parse`]): one source of
//! truth with the decoders.

use super::record::MUST;
use super::status::Refusal;
use super::upgrade::UpgradeRequestInfo;
use hyper::header::{HeaderMap, HeaderValue};
use kubecast_core::handshake::{
    RemoteCommandVersion, StreamProtocol, UpgradeRequest, WsProtocol, BEARER_SUBPROTOCOL_PREFIX,
};

/// The client's offer, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Every offered version can be recorded (or none was offered: the
    /// protocol's default, `channel.k8s.io`, which can).
    Decodable,
    /// Some can: offer only `keep` upstream; `dropped` cannot be recorded.
    Partly {
        keep: Vec<String>,
        dropped: Vec<String>,
    },
    /// None of the offered versions can be recorded.
    Undecodable,
}

impl Offer {
    /// Judges `request.offered` (bearer-token subprotocols are not in it).
    pub fn check(request: &UpgradeRequest) -> Offer {
        let (keep, dropped): (Vec<String>, Vec<String>) = request
            .offered
            .iter()
            .cloned()
            .partition(|offer| decodable(request.protocol, offer));
        match (keep.is_empty(), dropped.is_empty()) {
            (_, true) => Offer::Decodable,
            (true, false) => Offer::Undecodable,
            (false, false) => Offer::Partly { keep, dropped },
        }
    }
}

/// Whether the core decodes a session that negotiated `offer`.
pub fn decodable(protocol: StreamProtocol, offer: &str) -> bool {
    match protocol {
        StreamProtocol::WebSocket => WsProtocol::parse(offer).is_some(),
        StreamProtocol::Spdy => RemoteCommandVersion::parse(offer).is_some(),
    }
}

/// The versions the core records over `protocol`, newest first (for
/// messages).
pub fn supported(protocol: StreamProtocol) -> Vec<&'static str> {
    match protocol {
        StreamProtocol::WebSocket => [
            WsProtocol::V5Channel,
            WsProtocol::V4Channel,
            WsProtocol::V4Base64Channel,
            WsProtocol::Base64Channel,
            WsProtocol::Channel,
        ]
        .map(WsProtocol::as_str)
        .to_vec(),
        StreamProtocol::Spdy => [
            RemoteCommandVersion::V5,
            RemoteCommandVersion::V4,
            RemoteCommandVersion::V3,
            RemoteCommandVersion::V2,
            RemoteCommandVersion::V1,
        ]
        .map(RemoteCommandVersion::as_str)
        .to_vec(),
    }
}

/// The header that carries the offer.
fn offer_header(protocol: StreamProtocol) -> &'static str {
    match protocol {
        StreamProtocol::WebSocket => "sec-websocket-protocol",
        StreamProtocol::Spdy => "x-stream-protocol-version",
    }
}

/// `Upgrade` name and offer, for messages: `websocket [v9.channel.k8s.io]`.
pub fn describe(protocol: StreamProtocol, offered: &[String]) -> String {
    let name = match protocol {
        StreamProtocol::WebSocket => "WebSocket",
        StreamProtocol::Spdy => "SPDY/3.1",
    };
    format!("{name} {}", offered.join(", "))
}

/// Rewrites the offer in `headers` (the request going upstream) to the
/// versions in `keep`, in the client's order. WebSocket: one
/// `Sec-WebSocket-Protocol` line, comma-separated (servers read the first
/// line), with any bearer-token subprotocol kept where it was (noauth mode
/// passes the caller's credentials on). SPDY: one `X-Stream-Protocol-Version`
/// line per version, as client-go sends them.
pub fn narrow(headers: &mut HeaderMap, protocol: StreamProtocol, keep: &[String]) {
    let name = offer_header(protocol);
    let tokens: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && (t.starts_with(BEARER_SUBPROTOCOL_PREFIX) || keep.iter().any(|k| k == t))
        })
        .map(str::to_string)
        .collect();
    headers.remove(name);
    let values: Vec<String> = match protocol {
        StreamProtocol::WebSocket => vec![tokens.join(", ")],
        StreamProtocol::Spdy => tokens,
    };
    for value in values {
        // Tokens came from a valid header value; a value that no longer
        // parses cannot occur, and would only drop that offer.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
}

/// Checks the client's protocol offer before anything goes upstream
/// ([`Offer::check`]), logs and counts what it means, and refuses the
/// session when it is enforced and nothing offered can be recorded.
pub(super) fn admit(
    info: &UpgradeRequestInfo,
    request: &UpgradeRequest,
    enforce: bool,
) -> Result<Offer, Refusal> {
    let offered = describe(request.protocol, &request.offered);
    let offer = Offer::check(request);
    match &offer {
        Offer::Decodable => {}
        Offer::Partly { dropped, .. } => {
            super::metrics::undecodable_offer("narrowed");
            tracing::info!(user = %info.caller, peer = %info.peer, offered = %offered,
                dropped = ?dropped, "offering upstream only the protocol versions that can be recorded");
        }
        Offer::Undecodable => {
            let supported = supported(request.protocol).join(", ");
            if enforce {
                super::metrics::undecodable_offer("refused");
                tracing::warn!(user = %info.caller, peer = %info.peer, offered = %offered,
                    "session refused: no offered protocol version can be recorded (fail-closed)");
                return Err(Refusal::forbidden(format!(
                    "{MUST}, but kubecast cannot record any protocol version this client offered \
                     ({offered}; it records {supported}), so it was refused before anything ran"
                )));
            }
            super::metrics::undecodable_offer("relayed");
            tracing::warn!(user = %info.caller, peer = %info.peer, offered = %offered,
                supported = %supported,
                "no offered protocol version can be recorded: relayed unrecorded (fail-open)");
        }
    }
    Ok(offer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubecast_core::handshake::parse_request;

    fn request(upgrade: &str, offer_lines: &[&str]) -> UpgradeRequest {
        let (method, header, extra) = if upgrade == "websocket" {
            (
                "GET",
                "Sec-WebSocket-Protocol",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            )
        } else {
            ("POST", "X-Stream-Protocol-Version", "")
        };
        let mut head = format!(
            "{method} /api/v1/namespaces/default/pods/demo/exec?command=ls&stdout=true HTTP/1.1\r\n\
             Host: x\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n{extra}"
        );
        for line in offer_lines {
            head.push_str(&format!("{header}: {line}\r\n"));
        }
        head.push_str("\r\n");
        parse_request(head.as_bytes()).unwrap().unwrap().value
    }

    #[test]
    fn offers_kubectl_sends_are_decodable() {
        // kubectl v1.32's offers (see tests/fixtures).
        let ws = request("websocket", &["v5.channel.k8s.io"]);
        assert_eq!(Offer::check(&ws), Offer::Decodable);
        let spdy = request(
            "SPDY/3.1",
            &[
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io",
            ],
        );
        assert_eq!(Offer::check(&spdy), Offer::Decodable);
        assert_eq!(Offer::check(&request("websocket", &[])), Offer::Decodable);
        assert_eq!(Offer::check(&request("SPDY/3.1", &[])), Offer::Decodable);
    }

    #[test]
    fn unknown_offers_are_judged() {
        let only = request("websocket", &["v9.channel.k8s.io"]);
        assert_eq!(Offer::check(&only), Offer::Undecodable);
        let mixed = request("SPDY/3.1", &["v9.channel.k8s.io", "v4.channel.k8s.io"]);
        assert_eq!(
            Offer::check(&mixed),
            Offer::Partly {
                keep: vec!["v4.channel.k8s.io".into()],
                dropped: vec!["v9.channel.k8s.io".into()],
            }
        );
        assert!(supported(StreamProtocol::Spdy).contains(&"v4.channel.k8s.io"));
        assert!(supported(StreamProtocol::WebSocket)
            .iter()
            .all(|p| decodable(StreamProtocol::WebSocket, p)));
    }

    #[test]
    fn narrowing_keeps_bearer_subprotocols_and_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            "sec-websocket-protocol",
            HeaderValue::from_static(
                "v9.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9r, v5.channel.k8s.io",
            ),
        );
        headers.append(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        let keep = [
            "v5.channel.k8s.io".to_string(),
            "v4.channel.k8s.io".to_string(),
        ];
        narrow(&mut headers, StreamProtocol::WebSocket, &keep);
        let lines: Vec<_> = headers.get_all("sec-websocket-protocol").iter().collect();
        assert_eq!(
            lines,
            ["base64url.bearer.authorization.k8s.io.dG9r, v5.channel.k8s.io, v4.channel.k8s.io"]
        );

        let mut headers = HeaderMap::new();
        for v in [
            "v9.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
        ] {
            headers.append("x-stream-protocol-version", HeaderValue::from_static(v));
        }
        let keep = [
            "v4.channel.k8s.io".to_string(),
            "v3.channel.k8s.io".to_string(),
        ];
        narrow(&mut headers, StreamProtocol::Spdy, &keep);
        let lines: Vec<_> = headers
            .get_all("x-stream-protocol-version")
            .iter()
            .collect();
        assert_eq!(lines, ["v4.channel.k8s.io", "v3.channel.k8s.io"]);
    }
}
