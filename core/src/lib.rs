//! `kubecast-core`: the pure, synchronous heart of kubecast.
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a thread or
//! awaits a future. Callers feed it the bytes they read and drain what it
//! decides; `core/clippy.toml` bans `Instant::now` and `SystemTime::now` so
//! time can only come in as an argument. That is what lets the same code run
//! under tokio, smol, a blocking loop, or a deterministic replay of captured
//! byte streams.
//!
//! Layers, bottom up:
//!
//! - [`handshake`]: the HTTP/1.1 upgrade request and `101` response heads —
//!   which resource (exec, attach, port-forward), which pod and command, which
//!   streaming protocol and version were offered and chosen.
//! - [`spdy`] and [`ws`]: incremental decoders for SPDY/3.1 and RFC 6455 with
//!   the Kubernetes remotecommand / channel semantics on top.
//! - [`exec`]: the protocol-neutral event model both decoders produce, and
//!   [`exec::ExecDecoder`], which picks the right decoder from a handshake.
//! - [`capture`]: the on-disk format for both directions of a session's raw
//!   bytes, used for fixtures and replay.
//! - [`drive`]: what the runtime adapters share — the driving loop's
//!   decisions ([`drive::Driver`]), the machines it drives, and the public
//!   types both adapters re-export.
//!
//! Every length read from the wire is checked against [`Limits`]; violations
//! are typed errors, never panics.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod audit;
pub mod capture;
pub mod cast;
pub mod drive;
pub mod exec;
pub mod handshake;
mod limits;
pub mod recording;
pub mod replay;
pub mod session;
pub mod spdy;
pub mod upload;
pub mod ws;

pub use exec::{
    CloseCause, DataStream, DecodeError, ExecDecoder, ExecEvent, ExitStatus, Side, StreamEnd,
    StreamKind, TerminalSize,
};
pub use limits::Limits;
