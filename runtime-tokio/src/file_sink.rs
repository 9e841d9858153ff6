//! [`FileSink`]: a session's cast written to a `.cast` file.

use crate::sink::{SessionSink, SinkError};
use bytes::Bytes;
use kubecast_core::drive::file_name;
use kubecast_core::session::SessionEvent;
use std::future::{ready, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

/// Writes the cast of one session to `DIR/STEM.cast`.
///
/// - Nothing touches the disk until the first cast bytes arrive: a
///   connection that is passed through unrecorded (discovery GETs,
///   port-forward) leaves no file.
/// - The cast is written to a hidden temporary file in `DIR`
///   (`.kubecast-<pid>-sink-<n>.partial`, the pattern `kubecast recorder`
///   recovers after a crash) and, on [`SessionSink::finish`], synced and
///   given its final name with `link` + `unlink`, which never replaces an
///   existing file: `STEM.cast`, else `STEM_2.cast`, `STEM_3.cast`, …
/// - A recording that did not end properly (no
///   [`SessionEvent::RecordingFinished`], or a write failed) is kept as
///   `STEM_incomplete.cast`: nothing is silently dropped.
///
/// The stem is sanitised to `[A-Za-z0-9._@+-]` (anything else becomes `-`,
/// no leading dot, at most 200 bytes).
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    stem: String,
    file: Option<(File, PathBuf)>,
    complete: bool,
    failed: bool,
    written: u64,
    path: Option<PathBuf>,
}

impl FileSink {
    /// A sink for `DIR/STEM.cast`; `dir` is created if needed when the
    /// first cast bytes arrive.
    pub fn new(dir: impl Into<PathBuf>, stem: &str) -> FileSink {
        FileSink {
            dir: dir.into(),
            stem: file_name::sanitise(stem),
            file: None,
            complete: false,
            failed: false,
            written: 0,
            path: None,
        }
    }

    /// Where the recording was placed, once [`SessionSink::finish`] has run
    /// (`None` when there was nothing to record).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Cast bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            tokio::fs::create_dir_all(&self.dir).await?;
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let opened = loop {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let tmp = self.dir.join(file_name::temp_name(std::process::id(), n));
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .await
                {
                    Ok(file) => break (file, tmp),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            };
            self.file = Some(opened);
        }
        match &mut self.file {
            Some((file, _)) => Ok(file),
            None => Err(io::Error::other("the recording file is not open")),
        }
    }

    async fn write(&mut self, bytes: Bytes) -> Result<(), SinkError> {
        let result = async {
            let file = self.open().await?;
            file.write_all(&bytes).await
        }
        .await;
        match result {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e.into())
            }
        }
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
        let complete = self.complete && !self.failed && synced.is_ok();
        let placed = place(&self.dir, &tmp, &self.stem, complete).await;
        if let Ok(path) = &placed {
            self.path = Some(path.clone());
        }
        synced?;
        placed?;
        Ok(())
    }
}

impl SessionSink for FileSink {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        if matches!(event, SessionEvent::RecordingFinished(_)) {
            self.complete = true;
        }
        ready(Ok(()))
    }

    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.write(bytes)
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.complete()
    }
}

/// Gives `tmp` its final name in `dir` without replacing an existing file.
async fn place(dir: &Path, tmp: &Path, stem: &str, complete: bool) -> io::Result<PathBuf> {
    for name in file_name::final_names(stem, complete) {
        let target = dir.join(name);
        match tokio::fs::hard_link(tmp, &target).await {
            Ok(()) => {
                tokio::fs::remove_file(tmp).await?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links here: check, then rename (best effort).
                if tokio::fs::symlink_metadata(&target).await.is_ok() {
                    continue;
                }
                tokio::fs::rename(tmp, &target).await?;
                return Ok(target);
            }
        }
    }
    Err(file_name::exhausted(stem))
}
