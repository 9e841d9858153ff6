//! [`FileSink`]: a session's cast written to a `.cast` file.

use crate::sink::{SessionSink, SinkError};
use async_fs::{File, OpenOptions};
use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use kubecast_core::drive::file_name::{self, CastFile};
use kubecast_core::session::SessionEvent;
use std::future::{ready, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes the cast of one session to `DIR/STEM.cast` under a temporary
/// name, placed when the session finishes — the rules are the core's
/// [`CastFile`]; this type does the file I/O with `async-fs`.
#[derive(Debug)]
pub struct FileSink {
    cast: CastFile,
    file: Option<(File, PathBuf)>,
}

impl FileSink {
    /// A sink for `DIR/STEM.cast`; `dir` is created if needed when the
    /// first cast bytes arrive.
    pub fn new(dir: impl Into<PathBuf>, stem: &str) -> FileSink {
        FileSink {
            cast: CastFile::new(dir.into(), stem),
            file: None,
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

    async fn write(&mut self, bytes: Bytes) -> Result<(), SinkError> {
        if self.file.is_none() {
            self.file = Some(open(&self.cast).await.inspect_err(|_| {
                self.cast.note_write(0, false);
            })?);
        }
        let result = match &mut self.file {
            Some((file, _)) => file.write_all(&bytes).await,
            None => Err(io::Error::other("the recording file is not open")),
        };
        self.cast.note_write(bytes.len(), result.is_ok());
        Ok(result?)
    }

    async fn complete(&mut self) -> Result<(), SinkError> {
        let Some((mut file, tmp)) = self.file.take() else {
            return Ok(());
        };
        let synced = async {
            file.flush().await?;
            file.sync_all().await
        }
        .await;
        drop(file);
        let placed = place(&tmp, self.cast.targets(synced.is_ok()), self.cast.stem()).await;
        match placed {
            Ok(path) => self.cast.placed(path),
            Err(e) => return Err(e.into()),
        }
        Ok(synced?)
    }
}

/// A new temporary file in the sink's directory (created if needed).
async fn open(cast: &CastFile) -> io::Result<(File, PathBuf)> {
    async_fs::create_dir_all(cast.dir()).await?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let tmp = cast.temp_path(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await;
        match opened {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Gives `tmp` the first free name of `targets` without replacing an
/// existing file.
async fn place(
    tmp: &Path,
    targets: impl Iterator<Item = PathBuf>,
    stem: &str,
) -> io::Result<PathBuf> {
    for target in targets {
        match async_fs::hard_link(tmp, &target).await {
            Ok(()) => {
                async_fs::remove_file(tmp).await?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here: check, then rename (best effort).
                if async_fs::symlink_metadata(&target).await.is_ok() {
                    continue;
                }
                async_fs::rename(tmp, &target).await?;
                return Ok(target);
            }
        }
    }
    Err(file_name::exhausted(stem))
}

impl SessionSink for FileSink {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.cast.note_event(&event);
        ready(Ok(()))
    }

    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.write(bytes)
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.complete()
    }
}
