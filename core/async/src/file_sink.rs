//! [`FileSink`]: a session's cast written to a `.cast` file — the rules
//! are the core's `CastFile`; the file I/O is `std::fs`, run off the
//! executor through the runtime's [`Unblock`] (tokio's blocking pool, or
//! the `blocking` crate's that `async-fs` uses).

use kubecast_core::drive::file_name::{self, CastFile};
use kubecast_core::drive::{SessionSink, SinkError};
use kubecast_core::session::SessionEvent;
use std::fs::{File, OpenOptions};
use std::future::{ready, Future};
use std::io::{self, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The runtime's way to run blocking work (file I/O) off its executor.
pub trait Unblock {
    fn unblock<T, F>(work: F) -> impl Future<Output = io::Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static;
}

/// Writes the cast of one session to `DIR/STEM.cast` under a temporary
/// name, placed when the session finishes.
#[derive(Debug)]
pub struct FileSink<B> {
    cast: CastFile,
    /// The open temporary file; `None` before the first cast bytes and
    /// while a write has it on the blocking pool.
    file: Option<(File, PathBuf)>,
    runtime: PhantomData<fn() -> B>,
}

impl<B: Unblock> FileSink<B> {
    /// A sink for `DIR/STEM.cast`; `dir` is created if needed when the
    /// first cast bytes arrive.
    pub fn new(dir: impl Into<PathBuf>, stem: &str) -> Self {
        FileSink {
            cast: CastFile::new(dir.into(), stem),
            file: None,
            runtime: PhantomData,
        }
    }

    /// Where the recording was placed, once [`SessionSink::finish`] has run
    /// (`None` when there was nothing to record).
    pub fn path(&self) -> Option<&Path> {
        self.cast.path()
    }

    /// Cast bytes written so far.
    pub fn written(&self) -> u64 {
        self.cast.written()
    }

    async fn write(&mut self, bytes: bytes::Bytes) -> Result<(), SinkError> {
        let (mut file, tmp) = match self.file.take() {
            Some(open) => open,
            None => {
                let cast = self.cast.clone();
                B::unblock(move || open(&cast)).await.inspect_err(|_| {
                    self.cast.note_write(0, false);
                })?
            }
        };
        let len = bytes.len();
        let (file, result) = B::unblock(move || {
            let result = file.write_all(&bytes);
            Ok((file, result))
        })
        .await
        .inspect_err(|_| self.cast.note_write(0, false))?;
        self.file = Some((file, tmp));
        self.cast.note_write(len, result.is_ok());
        Ok(result?)
    }

    async fn complete(&mut self) -> Result<(), SinkError> {
        let Some((file, tmp)) = self.file.take() else {
            return Ok(());
        };
        let cast = self.cast.clone();
        let (placed, synced) = B::unblock(move || {
            let synced = file.sync_all();
            drop(file);
            let placed = place(&tmp, cast.targets(synced.is_ok()), cast.stem());
            Ok((placed, synced))
        })
        .await?;
        self.cast.placed(placed?);
        Ok(synced?)
    }
}

/// A new temporary file in the sink's directory (created if needed).
fn open(cast: &CastFile) -> io::Result<(File, PathBuf)> {
    std::fs::create_dir_all(cast.dir())?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let tmp = cast.temp_path(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Gives `tmp` the first free name of `targets` without replacing an
/// existing file.
fn place(tmp: &Path, targets: impl Iterator<Item = PathBuf>, stem: &str) -> io::Result<PathBuf> {
    for target in targets {
        match std::fs::hard_link(tmp, &target) {
            Ok(()) => {
                std::fs::remove_file(tmp)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here: check, then rename (best effort).
                if std::fs::symlink_metadata(&target).is_ok() {
                    continue;
                }
                std::fs::rename(tmp, &target)?;
                return Ok(target);
            }
        }
    }
    Err(file_name::exhausted(stem))
}

impl<B: Unblock> SessionSink for FileSink<B> {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.cast.note_event(&event);
        ready(Ok(()))
    }

    fn cast(&mut self, bytes: bytes::Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.write(bytes)
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.complete()
    }
}
