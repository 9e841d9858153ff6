//! Random bytes in the places a peer controls never panic the handshake
//! parser, the connection front end or the capture reader.

use kubecast_core::capture::CaptureReader;
use kubecast_core::exec::ConnectionDecoder;
use kubecast_core::handshake::{parse_request, parse_response};
use kubecast_core::{Limits, Side};
use proptest::prelude::*;

const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";

proptest! {
    #[test]
    fn random_heads(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&bytes);
        if let Ok(Some(req)) = parse_request(REQUEST) {
            let _ = parse_response(&bytes, &req.value);
        }
        let _ = CaptureReader::new(&bytes).map(|(_, r)| r.count());
    }

    #[test]
    fn mutated_requests(index in 0..REQUEST.len(), byte in any::<u8>()) {
        let mut bytes = REQUEST.to_vec();
        bytes[index] = byte;
        let _ = parse_request(&bytes);
    }

    #[test]
    fn random_connections(
        chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..16)
    ) {
        let mut decoder = ConnectionDecoder::new(Limits::default());
        let _ = decoder.handle(Side::Client, REQUEST, |_| {});
        let _ = decoder.handle(
            Side::Upstream,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
            |_| {},
        );
        for (client, bytes) in chunks {
            let side = if client { Side::Client } else { Side::Upstream };
            let _ = decoder.handle(side, &bytes, |_| {});
        }
        let _ = decoder.finish(Side::Client, |_| {});
    }
}
