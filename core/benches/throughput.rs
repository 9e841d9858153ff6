//! Core throughput on realistic terminal output, against `memcpy` of the same
//! bytes measured in the same run. Figures go to docs/benchmarks.md.
//!
//! `cargo bench -p kubecast-core --bench throughput`
//! (`KUBECAST_BENCH_MIB=N` changes the 64 MiB default.)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubecast_core::cast::CastWriter;
use kubecast_core::exec::DataStream;
use kubecast_core::handshake::{RemoteCommandVersion, WsProtocol};
use kubecast_core::session::{Output, Session, SessionConfig, SessionMeta};
use kubecast_core::spdy::{write_data, FrameWriter, SpdyDecoder};
use kubecast_core::ws::{encode_channel_message, WsDecoder};
use kubecast_core::{ExecEvent, Limits, Side};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The size of one write by the upstream (kubelet copies in 32 KiB).
const WRITE: usize = 32 * 1024;
/// The size of one read by the proxy.
const READ: usize = 64 * 1024;

/// Deterministic terminal-like output: colour escapes, UTF-8, long and
/// short lines, like `ls --color`, compiler logs and `top`.
fn terminal_output(len: usize) -> Vec<u8> {
    let words = [
        "build",
        "résumé",
        "€42",
        "ok",
        "😀",
        "src/main.rs:12:5",
        "warning:",
        "très",
        "日本語",
        "done",
    ];
    let mut out = Vec::with_capacity(len + 256);
    let mut i: usize = 0;
    while out.len() < len {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let color = 31 + (i >> 60) as u8 % 7;
        out.extend_from_slice(format!("\x1b[{color}m").as_bytes());
        let n = 3 + (i >> 40) % 40;
        for k in 0..n {
            out.extend_from_slice(words[((i >> 8) + k) % words.len()].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\x1b[0m\r\n");
    }
    out.truncate(len);
    out
}

fn ws_stream(output: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(output.len() + output.len() / 1000);
    for chunk in output.chunks(WRITE) {
        encode_channel_message(&mut bytes, WsProtocol::V5Channel, 1, chunk, None);
    }
    bytes
}

/// The client's SYN_STREAMs for a tty exec (error 1, stdin 3, stdout 5,
/// resize 7) and the upstream's stdout data frames.
fn spdy_streams(output: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut client = Vec::new();
    let mut writer = FrameWriter::new();
    for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
        writer
            .syn_stream(&mut client, id, 0, 0, &[("streamtype", kind)], false)
            .expect("header block");
    }
    write_data(&mut client, 7, b"{\"Width\":80,\"Height\":24}\n", false);
    let mut upstream = Vec::with_capacity(output.len() + output.len() / 1000);
    for chunk in output.chunks(WRITE) {
        write_data(&mut upstream, 5, chunk, false);
    }
    (client, upstream)
}

const WS_HEADS: (&[u8], &[u8]) = (
    b"GET /api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
);

const SPDY_HEADS: (&[u8], &[u8]) = (
    b"POST /api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
);

#[allow(clippy::disallowed_methods)] // a benchmark needs some base instant
fn base() -> Instant {
    Instant::now()
}

fn bench(c: &mut Criterion) {
    let mib: usize = std::env::var("KUBECAST_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let output = terminal_output(mib * 1024 * 1024);
    let ws = ws_stream(&output);
    let (spdy_client, spdy_upstream) = spdy_streams(&output);

    let mut group = c.benchmark_group("core");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(output.len() as u64));

    group.bench_function("memcpy (baseline)", |b| {
        let mut dst = vec![0u8; READ];
        b.iter(|| {
            for chunk in output.chunks(READ) {
                dst[..chunk.len()].copy_from_slice(chunk);
                black_box(&dst);
            }
        })
    });

    group.bench_function("spdy decode", |b| {
        b.iter(|| {
            let mut d = SpdyDecoder::new(RemoteCommandVersion::V4, &Limits::default());
            d.decode(Side::Client, &spdy_client, |_| {})
                .expect("client");
            let mut n = 0usize;
            for chunk in spdy_upstream.chunks(READ) {
                d.decode(Side::Upstream, chunk, |e| {
                    if let ExecEvent::Data { bytes, .. } = e {
                        n += bytes.len();
                    }
                })
                .expect("decode");
            }
            assert_eq!(n, output.len());
        })
    });

    group.bench_function("websocket decode", |b| {
        b.iter(|| {
            let mut d = WsDecoder::new(WsProtocol::V5Channel, &Limits::default());
            let mut n = 0usize;
            for chunk in ws.chunks(READ) {
                d.decode(Side::Upstream, chunk, |e| {
                    if let ExecEvent::Data { bytes, .. } = e {
                        n += bytes.len();
                    }
                })
                .expect("decode");
            }
            assert_eq!(n, output.len());
        })
    });

    group.bench_function("cast encode", |b| {
        let mut out = Vec::with_capacity(4 * READ);
        b.iter(|| {
            let mut w = CastWriter::new();
            for chunk in output.chunks(WRITE) {
                w.data(
                    Duration::from_millis(1),
                    DataStream::Stdout,
                    chunk,
                    true,
                    &mut out,
                );
                black_box(&out);
                out.clear();
            }
        })
    });

    group.bench_function("websocket session (decode + cast)", |b| {
        let t0 = base();
        let mut resize = Vec::new();
        let size = b"{\"Width\":80,\"Height\":24}";
        encode_channel_message(
            &mut resize,
            WsProtocol::V5Channel,
            4,
            size,
            Some([1, 2, 3, 4]),
        );
        b.iter(|| {
            let mut s = Session::new(SessionConfig::default(), SessionMeta::default());
            s.handle_client_bytes(t0, WS_HEADS.0);
            s.handle_upstream_bytes(t0, WS_HEADS.1);
            s.handle_client_bytes(t0, &resize);
            let mut cast = 0usize;
            for chunk in ws.chunks(READ) {
                s.handle_upstream_bytes(t0, chunk);
                while let Some(o) = s.poll_output() {
                    if let Output::Cast(bytes) = o {
                        cast += bytes.len();
                    }
                }
            }
            assert!(cast > output.len());
        })
    });
    group.bench_function("spdy session (decode + cast)", |b| {
        let t0 = base();
        b.iter(|| {
            let mut s = Session::new(SessionConfig::default(), SessionMeta::default());
            s.handle_client_bytes(t0, SPDY_HEADS.0);
            s.handle_upstream_bytes(t0, SPDY_HEADS.1);
            s.handle_client_bytes(t0, &spdy_client);
            let mut cast = 0usize;
            for chunk in spdy_upstream.chunks(READ) {
                s.handle_upstream_bytes(t0, chunk);
                while let Some(o) = s.poll_output() {
                    if let Output::Cast(bytes) = o {
                        cast += bytes.len();
                    }
                }
            }
            assert!(cast > output.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
