//! `kubecast-async`: the async half of driving a session, written once for
//! both runtime adapters (`kubecast-tokio`, `kubecast-smol`).
//!
//! The core (`kubecast_core::drive`) decides and stays synchronous; an
//! adapter used to wrap each decision in the same `async` code twice, once
//! per runtime. This crate holds that code, generic over small traits an
//! adapter implements for its runtime in a few lines (`src/drive/io.rs`,
//! `src/upload.rs` in each adapter):
//!
//! - [`ByteStream`]: `poll_read` / `poll_write` / `poll_flush` /
//!   `poll_shutdown` on one connection (tokio's `AsyncRead + AsyncWrite`,
//!   or `futures-io`'s, where shutdown is `poll_close`);
//! - [`Clock`]: the runtime's `now` and `sleep_until` (tokio's clock can be
//!   paused in tests, so the clock is the runtime's, not `Instant::now`);
//! - [`Unblock`]: run blocking work (file I/O) on the runtime's pool;
//! - [`Dial`]: TCP and TLS to a recorder, as a futures-io stream.
//!
//! It depends on no runtime (h2 needs tokio's I/O traits, not its
//! runtime), spawns nothing and starts nothing: the futures
//! it returns run on whatever executor polls them.
//!
//! - [`run`]: the drive loop (both directions, the machine's own I/O, one
//!   timer, the stop signal) around the core's `Driver`;
//! - [`SinkPort`]: hands a machine's items to a `SessionSink`, each call
//!   bounded by the sink timeout;
//! - [`Driven`]: what the loop drives — a core `Machine` and the I/O it
//!   brings along;
//! - [`Recorder`]: a recording's machine with its upload transport (the
//!   adapter's [`UploadTransport`]) and deadline — the adapters'
//!   `RecordingHandle`: `wait_open`, the upload's events in the loop, its
//!   end after it;
//! - [`Uploads`]: the recorder upload's attempts (h2 v2, HTTP/1.1 v1),
//!   polled in place, over the adapter's [`Dial`] (TCP and TLS);
//! - [`FileSink`]: the cast to a `.cast` file, its `std::fs` I/O run
//!   through the runtime's [`Unblock`];
//! - [`adapter_api!`]: the adapters' public functions and `RecordingHandle`
//!   over all of the above, stamped into each with its runtime's types.

mod api;
mod file_sink;
mod port;
mod pump;
mod recording;
mod run;
mod upload;

pub use file_sink::{FileSink, Unblock};
pub use port::{Driven, SinkPort};
pub use recording::{Recorder, UploadTransport};
pub use run::run;
pub use upload::{Dial, Uploads};

#[doc(hidden)]
pub use bytes as __bytes;
/// For [`adapter_api!`]'s expansion in the adapters.
#[doc(hidden)]
pub use kubecast_core as __core;

use std::future::Future;
use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

/// One byte stream (a connection), as the drive loop uses it. Every method
/// behaves like its namesake in tokio's and futures-io's I/O traits.
pub trait ByteStream {
    /// Reads into `buf`; `Ok(0)` is end of file.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts the write half down: the peer reads end of file.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The runtime's clock and timer.
pub trait Clock {
    /// A sleep until a point in time (its output is ignored).
    type Sleep: Future + Send;
    /// The runtime's now (tokio's can be paused in tests).
    fn now() -> Instant;
    fn sleep_until(at: Instant) -> Self::Sleep;
}
