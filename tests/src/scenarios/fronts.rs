//! Peers the recorder scenarios put in front of a real `kubecast recorder`:
//! a connection-counting TCP front that can cut its connections or spoil
//! the first upload (`Front`, `Spoil`), a refused address, an HTTP/1.1-only
//! front, and a throwaway CA with a recorder certificate.

use super::STEP;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A TCP relay in front of a recorder that counts the connections it
/// accepts and can break them all at once (threads; the listener lives as
/// long as the test process).
#[derive(Debug, Clone)]
pub struct Front {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Front {
    pub fn start(target: SocketAddr) -> Front {
        Front::serve(target, None)
    }

    /// A front that spoils the first upload request it relays
    /// ([`Spoil`]) and relays everything else unchanged.
    pub fn spoiling_the_first_upload(target: SocketAddr, how: Spoil) -> Front {
        Front::serve(target, Some((how, Arc::default())))
    }

    /// `spoiled`: the stream of the upload spoiled on any of the front's
    /// connections (0 until then: only one is spoiled).
    fn serve(target: SocketAddr, spoil: Option<(Spoil, Arc<AtomicU32>)>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let front = Front {
            addr: listener.local_addr().expect("address"),
            accepted: Arc::default(),
            open: Arc::default(),
        };
        let serve = front.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                serve.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(target) else {
                    return;
                };
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    serve.open.lock().expect("the front").extend([a, b]);
                }
                match &spoil {
                    Some((how, spoiled)) => {
                        H2Relay::start(inbound, outbound, *how, spoiled.clone())
                    }
                    None => relay(inbound, outbound),
                }
            }
        });
        front
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Breaks every connection relayed so far, both ways.
    pub fn cut(&self) {
        for stream in self.open.lock().expect("the front").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies bytes both ways between two sockets until either side ends.
fn relay(inbound: TcpStream, outbound: TcpStream) {
    for (mut from, mut to) in [
        (inbound.try_clone(), outbound.try_clone()),
        (Ok(outbound), Ok(inbound)),
    ]
    .into_iter()
    .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// How a [`Front`] spoils the first upload request it relays (the first
/// `HEADERS` frame that does not end its stream: a `POST /v2/record`; the
/// `HEAD` probe ends its stream), the connection living on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    /// The request never reaches the recorder; the client gets
    /// `RST_STREAM(REFUSED_STREAM)` for it instead.
    Refuse,
    /// The request reaches the recorder, whose answer never reaches the
    /// client: the stream waits for its response head until the attempt
    /// is given up.
    Stall,
}

/// An HTTP/2 relay that spoils one upload stream ([`Spoil`]) and passes
/// every other frame unchanged, except that both sides' `SETTINGS` also
/// ask the peer for an HPACK dynamic table of 0: a dropped header block
/// cannot leave a decoder out of step with its encoder for the requests
/// that follow on the same connection (RFC 9113 §6.5.2, RFC 7541 §4.2).
struct H2Relay;

impl H2Relay {
    const PREFACE: usize = 24;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    /// `END_STREAM` on `HEADERS`, `ACK` on `SETTINGS`.
    const END_STREAM_OR_ACK: u8 = 0x1;
    const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
    const REFUSED_STREAM: u32 = 0x7;

    /// Relays `inbound` (the client) to `outbound` (the recorder) until
    /// either side ends (threads); `spoiled` is shared by every connection
    /// of the front.
    fn start(inbound: TcpStream, outbound: TcpStream, how: Spoil, spoiled: Arc<AtomicU32>) {
        let (Ok(client_in), Ok(server_in)) = (inbound.try_clone(), outbound.try_clone()) else {
            return;
        };
        // Both directions write to the client (frames and the reset):
        // whole frames, under the lock.
        let client_out = Arc::new(Mutex::new(inbound));
        let to_client = client_out.clone();
        // The stream spoiled on this connection, if any (0: none).
        let here = Arc::new(AtomicU32::new(0));
        let seen = here.clone();
        std::thread::spawn(move || {
            H2Relay::upstream(client_in, outbound, &to_client, how, &spoiled, &seen);
        });
        std::thread::spawn(move || H2Relay::downstream(server_in, &client_out, &here));
    }

    /// Client to recorder: the preface, then frame by frame.
    fn upstream(
        mut from: TcpStream,
        mut to: TcpStream,
        client: &Mutex<TcpStream>,
        how: Spoil,
        spoiled: &AtomicU32,
        here: &AtomicU32,
    ) {
        let mut preface = [0u8; H2Relay::PREFACE];
        if from.read_exact(&mut preface).is_ok() && to.write_all(&preface).is_ok() {
            while let Some(mut frame) = H2Frame::read(&mut from) {
                let upload =
                    frame.kind == H2Relay::HEADERS && frame.flags & H2Relay::END_STREAM_OR_ACK == 0;
                if upload
                    && spoiled
                        .compare_exchange(0, frame.stream, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    // Before the recorder can answer it.
                    here.store(frame.stream, Ordering::SeqCst);
                    if how == Spoil::Refuse {
                        let reset = H2Frame {
                            kind: H2Relay::RST_STREAM,
                            flags: 0,
                            stream: frame.stream,
                            payload: H2Relay::REFUSED_STREAM.to_be_bytes().to_vec(),
                        };
                        if !reset.write(&mut client.lock().expect("the client")) {
                            break;
                        }
                        continue;
                    }
                }
                if how == Spoil::Refuse && H2Relay::spoiled_here(here, frame.stream) {
                    continue;
                }
                H2Relay::no_dynamic_table(&mut frame);
                if !frame.write(&mut to) {
                    break;
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    /// Recorder to client, frame by frame.
    fn downstream(mut from: TcpStream, client: &Mutex<TcpStream>, here: &AtomicU32) {
        while let Some(mut frame) = H2Frame::read(&mut from) {
            if H2Relay::spoiled_here(here, frame.stream) {
                continue;
            }
            H2Relay::no_dynamic_table(&mut frame);
            if !frame.write(&mut client.lock().expect("the client")) {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = client
            .lock()
            .expect("the client")
            .shutdown(std::net::Shutdown::Both);
    }

    /// Whether `stream` is the one spoiled on this connection (never the
    /// connection's own frames, stream 0).
    fn spoiled_here(here: &AtomicU32, stream: u32) -> bool {
        stream != 0 && here.load(Ordering::SeqCst) == stream
    }

    /// Adds a dynamic table of 0 to a `SETTINGS` frame (the last value of
    /// a setting wins).
    fn no_dynamic_table(frame: &mut H2Frame) {
        if frame.kind == H2Relay::SETTINGS && frame.flags & H2Relay::END_STREAM_OR_ACK == 0 {
            frame
                .payload
                .extend_from_slice(&H2Relay::SETTINGS_HEADER_TABLE_SIZE.to_be_bytes());
            frame.payload.extend_from_slice(&0u32.to_be_bytes());
        }
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1).
struct H2Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl H2Frame {
    /// The next frame, `None` at the end of the connection.
    fn read(from: &mut TcpStream) -> Option<H2Frame> {
        let mut head = [0u8; 9];
        from.read_exact(&mut head).ok()?;
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = head;
        let mut payload = vec![0u8; u32::from_be_bytes([0, l0, l1, l2]) as usize];
        from.read_exact(&mut payload).ok()?;
        Some(H2Frame {
            kind,
            flags,
            stream: u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]),
            payload,
        })
    }

    /// `false` once the peer is gone.
    fn write(&self, to: &mut TcpStream) -> bool {
        let len = u32::try_from(self.payload.len()).expect("a frame length");
        let mut bytes = len.to_be_bytes()[1..].to_vec();
        bytes.extend_from_slice(&[self.kind, self.flags]);
        bytes.extend_from_slice(&self.stream.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        to.write_all(&bytes).is_ok()
    }
}

/// An address nothing listens on (connection refused).
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr
}

/// A front that speaks only HTTP/1.1, like an L7 proxy without h2c: a
/// connection that opens with the HTTP/2 preface (`PRI …`) is closed at
/// once; any other is relayed byte for byte to `target` (threads; the
/// listener lives as long as the test process).
pub fn h1_only_front(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(mut inbound) = inbound else { return };
            std::thread::spawn(move || {
                let _ = inbound.set_read_timeout(Some(STEP * 3));
                let mut first = [0u8; 3];
                if inbound.read_exact(&mut first).is_err() || &first == b"PRI" {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target) else {
                    return;
                };
                if outbound.write_all(&first).is_err() {
                    return;
                }
                let (Ok(mut up_in), Ok(mut down_out)) = (inbound.try_clone(), outbound.try_clone())
                else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_in, &mut outbound);
                    let _ = outbound.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut down_out, &mut inbound);
                let _ = inbound.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}

/// A private CA and a `localhost` certificate it signed, as PEM files in
/// `dir`: `(cert, key, ca)`.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecast upload test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    let cert = params.signed_by(&key, &issuer).expect("the certificate");
    let files = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    std::fs::write(&files.0, cert.pem()).expect("write the certificate");
    std::fs::write(&files.1, key.serialize_pem()).expect("write the key");
    std::fs::write(&files.2, ca_cert.pem()).expect("write the CA");
    files
}
