//! The public API — [`drive`], [`RecordingHandle`], [`drive_recording`]
//! and their variants, [`FileSink`] — on `futures-io` byte streams and `async-io`
//! timers. The functions are `kubecast_async::adapter_api!`'s (the same in
//! `kubecast-tokio`), the loop is `kubecast-async`'s, the decisions are the
//! core's `Driver`; this module only names the runtime's types.

pub(crate) mod io;

pub use kubecast_core::drive::{
    DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError, Preamble,
    DEFAULT_BUFFER_SIZE,
};

kubecast_async::adapter_api! {
    read: futures_lite::io::AsyncRead,
    write: futures_lite::io::AsyncWrite,
    stream: io::Stream,
    clock: io::AsyncIo,
    transport: crate::upload::Transport,
    tls: crate::upload::UploadTls,
    unblock: io::AsyncIo,
}
