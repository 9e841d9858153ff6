//! The public API — [`drive`], [`RecordingHandle`], [`drive_recording`]
//! and their variants, [`FileSink`] — on tokio byte streams and tokio's clock. The
//! functions are `kubecast_async::adapter_api!`'s (the same in
//! `kubecast-smol`), the loop is `kubecast-async`'s, the decisions are the
//! core's `Driver`; this module only names tokio's types.

pub(crate) mod io;

pub use kubecast_core::drive::{
    DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError, Preamble,
    DEFAULT_BUFFER_SIZE,
};

kubecast_async::adapter_api! {
    read: tokio::io::AsyncRead,
    write: tokio::io::AsyncWrite,
    stream: io::Stream,
    clock: io::Tokio,
    transport: crate::upload::Transport,
    tls: crate::upload::UploadTls,
    unblock: io::Tokio,
}
