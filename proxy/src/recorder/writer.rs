//! One recording's file: written and fsync'd by a writer task of its own, so
//! the ingest loop keeps reading the upload while the disk works.
//!
//! Why: an ingest loop that awaited each write (one blocking-pool hand-off per
//! HTTP/2 DATA frame) and each `fdatasync` inline ran at about 110 MiB/s, and
//! while it waited on a slow sync it stopped reading, so an uploader sending a
//! tiny DATA frame per keystroke exhausted h2's small-frame budget and the
//! connection died with `GOAWAY(ENHANCE_YOUR_CALM)` (docs/benchmarks.md).
//!
//! The ingest loop hands chunks to the writer ([`Recording::write`]); at most
//! [`MAX_QUEUED`] bytes wait at a time, so a disk slower than the uploader
//! still stops the reads and, through HTTP/2 flow control, the uploader. The
//! writer coalesces what is queued into one `write(2)` of up to
//! [`MAX_BATCH`] bytes on the blocking pool, and fsyncs when asked
//! ([`Recording::request_sync`]); [`Recording::durable`] only ever moves to a
//! byte count whose `fdatasync` returned, which is what acks report.

use super::store::{self, Store};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// Most bytes handed to the writer and not yet written.
pub const MAX_QUEUED: usize = 4 << 20;
/// Most bytes the writer gathers into one `write(2)` (one chunk may exceed it).
const MAX_BATCH: usize = 1 << 20;
/// Chunks smaller than this are copied before they are queued: a small slice
/// of a connection's read buffer would otherwise keep the whole buffer alive,
/// and the queue's byte cap would not bound the memory behind it.
const COPY_BELOW: usize = 4 * 1024;

/// What the writer has made durable, or why it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes whose `fdatasync` has returned.
    pub durable: u64,
    /// The error that stopped the writer, if any.
    pub failed: Option<String>,
}

enum Command {
    Data(Bytes),
    Sync,
}

/// Test-only slowness: every fsync of a recording first sleeps this long
/// (`kubecast recorder --test-sync-delay-ms`), to stand in for a busy disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncDelay(pub Duration);

/// One recording being written.
#[derive(Debug)]
pub struct Recording {
    commands: mpsc::UnboundedSender<Command>,
    room: Arc<Semaphore>,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<Finished>,
    tmp: PathBuf,
    stem: String,
    accepted: u64,
    sync_requested: u64,
}

/// What the writer task leaves behind.
#[derive(Debug)]
struct Finished {
    file: Arc<File>,
    written: u64,
    error: Option<io::Error>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Command::Sync => f.write_str("Sync"),
        }
    }
}

impl Recording {
    /// Starts the writer for `file`, the temporary file `tmp`.
    pub(super) fn start(file: File, tmp: PathBuf, stem: String, delay: SyncDelay) -> Recording {
        let (commands, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(MAX_QUEUED));
        let (progress_tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(run(Arc::new(file), rx, room.clone(), progress_tx, delay));
        Recording {
            commands,
            room,
            progress,
            task,
            tmp,
            stem,
            accepted: 0,
            sync_requested: 0,
        }
    }

    /// Queues `data` for writing; waits while [`MAX_QUEUED`] bytes are queued.
    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let mut rest = if data.len() < COPY_BELOW {
            Bytes::copy_from_slice(&data)
        } else {
            data
        };
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(MAX_QUEUED));
            let len = u32::try_from(piece.len()).map_err(io::Error::other)?;
            match self.room.acquire_many(len).await {
                Ok(permits) => permits.forget(),
                Err(_) => return Err(self.stopped()),
            }
            let n = piece.len() as u64;
            if self.commands.send(Command::Data(piece)).is_err() {
                return Err(self.stopped());
            }
            self.accepted += n;
        }
        Ok(())
    }

    /// Bytes accepted so far (queued or written).
    pub fn written(&self) -> u64 {
        self.accepted
    }

    /// Asks the writer to fsync what was accepted so far. Returns false if
    /// nothing new was accepted since the last request.
    pub fn request_sync(&mut self) -> io::Result<bool> {
        if self.sync_requested >= self.accepted {
            return Ok(false);
        }
        if self.commands.send(Command::Sync).is_err() {
            return Err(self.stopped());
        }
        self.sync_requested = self.accepted;
        Ok(true)
    }

    /// A receiver of the writer's progress, to wait on next to other events.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Bytes durable now, or the writer's error.
    pub fn durable(&self) -> io::Result<u64> {
        let p = self.progress.borrow();
        match &p.failed {
            Some(e) => Err(io::Error::other(e.clone())),
            None => Ok(p.durable),
        }
    }

    fn stopped(&self) -> io::Error {
        let failed = self.progress.borrow().failed.clone();
        io::Error::other(failed.unwrap_or_else(|| "the recording's writer stopped".into()))
    }

    /// Writes what is queued, fsyncs, and gives the file its final name,
    /// `_incomplete` unless `complete` (or a write or the sync failed).
    /// Returns the bytes stored and the final path.
    pub async fn finish(self, store: &Store, complete: bool) -> (u64, io::Result<PathBuf>) {
        drop(self.commands);
        let finished = match self.task.await {
            Ok(f) => f,
            Err(e) => return (0, Err(io::Error::other(e))),
        };
        let Finished {
            file,
            written,
            error,
        } = finished;
        let dir = store.dir().to_path_buf();
        let (tmp, stem) = (self.tmp, self.stem);
        let placed = tokio::task::spawn_blocking(move || {
            let synced = match error {
                Some(e) => Err(e),
                None => file.sync_all(),
            };
            drop(file);
            // A failed write or sync still keeps what the OS has, never as complete.
            let complete = complete && synced.is_ok();
            let placed = store::place(&dir, &tmp, &stem, complete)?;
            synced.map(|()| placed)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        (written, placed)
    }
}

/// The writer task: gathers queued chunks into batches and writes each with
/// one blocking call, fsyncing after it when a sync was asked for.
async fn run(
    file: Arc<File>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    room: Arc<Semaphore>,
    progress: watch::Sender<Progress>,
    delay: SyncDelay,
) -> Finished {
    let mut written = 0u64;
    let mut durable = 0u64;
    while let Some(first) = commands.recv().await {
        let mut chunks = Vec::new();
        let mut size = 0usize;
        let mut sync = false;
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Data(b) => {
                    size += b.len();
                    chunks.push(b);
                }
                Command::Sync => sync = true,
            }
            next = if size < MAX_BATCH {
                commands.try_recv().ok()
            } else {
                None
            };
        }
        let sync = sync && written + size as u64 > durable;
        let job = {
            let file = file.clone();
            let room = room.clone();
            move || -> io::Result<()> {
                write_batch(&file, chunks, size)?;
                // Room for the next chunks before the (possibly slow) sync.
                room.add_permits(size);
                if sync {
                    if !delay.0.is_zero() {
                        std::thread::sleep(delay.0);
                    }
                    file.sync_data()?;
                }
                Ok(())
            }
        };
        let result = tokio::task::spawn_blocking(job)
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        if let Err(e) = result {
            // Wakes an ingest loop waiting for room; it then reads the error.
            progress.send_modify(|p| p.failed = Some(e.to_string()));
            room.close();
            return Finished {
                file,
                written,
                error: Some(e),
            };
        }
        written += size as u64;
        if sync {
            durable = written;
            progress.send_modify(|p| p.durable = durable);
        }
    }
    Finished {
        file,
        written,
        error: None,
    }
}

/// Writes `chunks` (`size` bytes in all) with one `write_all`.
fn write_batch(mut file: &File, chunks: Vec<Bytes>, size: usize) -> io::Result<()> {
    match chunks.as_slice() {
        [] => Ok(()),
        [one] => file.write_all(one),
        many => {
            let mut batch = Vec::with_capacity(size);
            for chunk in many {
                batch.extend_from_slice(chunk);
            }
            file.write_all(&batch)
        }
    }
}
