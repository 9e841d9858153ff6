//! `kubecast-smol`: drives `kubecast-core` sessions on `futures-io`
//! streams with `async-io` timers — smol, async-std or any executor.
//!
//! The twin of `kubecast-tokio`, with the same names for the same things,
//! so switching runtimes is changing one import: [`drive`] /
//! [`drive_until`] / [`drive_until_ended`] run one [`kubecast_core::session::Session`] between two
//! `AsyncRead + AsyncWrite` streams into a [`SessionSink`] ([`FileSink`],
//! [`ChannelSink`] or your own — the trait is the core's, so a sink works
//! with both adapters); [`start_recording`], [`RecordingHandle`] and
//! [`drive_recording`] / [`drive_recording_until`] /
//! [`drive_recording_until_ended`] stream a recorded
//! session's cast to `kubecast recorder` (v2 over HTTP/2 with acks via
//! `h2`, v1 over HTTP/1.1, failover, the ack window, TLS via
//! `futures-rustls` and [`UploadTls`]), reporting [`UploadEvent`]s.
//!
//! The decisions are the core's ([`kubecast_core::drive`]: the `Driver`,
//! the `Machine`s, the `Ledger`); this crate moves bytes and sleeps. It
//! starts no runtime and spawns nothing: the upload's attempts are futures
//! the driver polls in place (so the first dial starts when a
//! [`RecordingHandle`] is first awaited, not in [`RecordingHandle::new`]).
//! An end of file is passed on with `close()`, so give the drive functions
//! streams whose `close()` shuts the write half down (`async-net`'s
//! `TcpStream` does; a bare `async_io::Async<TcpStream>` only flushes). `h2` sees the
//! connection through `kubecast-async`'s adapter to tokio's I/O traits
//! (the traits only; no tokio runtime). The audit sink exists only in
//! `kubecast-tokio`.

mod drive;
mod sink;
mod upload;

pub use drive::FileSink;
pub use drive::{
    drive, drive_until, drive_until_ended, DriveError, DriveErrorKind, DriveOptions, DriveSummary,
    OnSinkError, Preamble, DEFAULT_BUFFER_SIZE,
};
pub use drive::{
    drive_recording, drive_recording_until, drive_recording_until_ended, start_recording,
    RecordingHandle,
};
pub use sink::{ChannelSink, SessionSink, SinkError, SinkItem, UploadEvent};
pub use upload::UploadTls;
