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
use std::io::{self, IoSlice, Write};
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

/// Test only: runs on the blocking thread before every fsync of a recording,
/// to stand in for a busy disk (`kubecast recorder --test-sync-delay-ms`) or
/// to hold a sync while a unit test looks at the progress.
#[derive(Clone, Default)]
pub struct BeforeSync(Option<Arc<dyn Fn() + Send + Sync>>);

impl BeforeSync {
    /// Sleeps `delay` before each fsync (nothing for zero).
    pub fn sleep(delay: Duration) -> BeforeSync {
        if delay.is_zero() {
            return BeforeSync(None);
        }
        BeforeSync(Some(Arc::new(move || std::thread::sleep(delay))))
    }

    fn run(&self) {
        if let Some(hook) = &self.0 {
            hook();
        }
    }
}

impl std::fmt::Debug for BeforeSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BeforeSync(hook)"
        } else {
            "BeforeSync(none)"
        })
    }
}

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
    pub(super) fn start(
        file: File,
        tmp: PathBuf,
        stem: String,
        before_sync: BeforeSync,
    ) -> Recording {
        let (commands, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(MAX_QUEUED));
        let (progress_tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(run(
            Arc::new(file),
            rx,
            room.clone(),
            progress_tx,
            before_sync,
        ));
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

    /// Bytes accepted that no sync request covers yet.
    pub fn unsynced(&self) -> u64 {
        self.accepted - self.sync_requested
    }

    /// True while a requested fsync has not yet reported back.
    pub fn sync_pending(&self) -> bool {
        let p = self.progress.borrow();
        p.failed.is_none() && p.durable < self.sync_requested
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
    before_sync: BeforeSync,
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
            let before_sync = before_sync.clone();
            move || -> io::Result<()> {
                write_batch(&file, &chunks)?;
                // Room for the next chunks before the (possibly slow) sync.
                room.add_permits(size);
                if sync {
                    before_sync.run();
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

/// Writes `chunks` in order with as few `writev(2)` calls as the kernel
/// allows — not copied into one buffer first: at recorder speeds that copy
/// was the largest user-space cost after the socket reads.
fn write_batch(mut file: &File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest = slices.as_mut_slice();
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubecast_tests::scratch::TempDir;
    use std::future::Future;
    use std::sync::mpsc as std_mpsc;
    use std::sync::Mutex;

    const WAIT: Duration = Duration::from_secs(20);

    /// A store whose fsyncs each report that they started and then wait for
    /// the test to let them go.
    fn gated_store(dir: &TempDir) -> (Store, std_mpsc::Receiver<()>, std_mpsc::Sender<()>) {
        let (started_tx, started) = std_mpsc::channel();
        let (release, release_rx) = std_mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let hook = move || {
            let _ = started_tx.send(());
            let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
        };
        let (store, _) = Store::open(dir.path()).unwrap();
        let store = store.before_sync(BeforeSync(Some(Arc::new(hook))));
        (store, started, release)
    }

    async fn next_durable(progress: &mut watch::Receiver<Progress>) -> u64 {
        tokio::time::timeout(WAIT, progress.changed())
            .await
            .expect("no progress in time")
            .expect("the writer stopped");
        let p = progress.borrow_and_update().clone();
        assert_eq!(p.failed, None);
        p.durable
    }

    #[test]
    fn a_batch_lands_in_order_whatever_its_pieces() {
        let dir = TempDir::create("writer-batch");
        let path = dir.path().join("batch");
        let file = File::create(&path).unwrap();
        // More pieces than one writev takes (IOV_MAX is 1024 on Linux),
        // empty ones among them.
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| match i % 7 {
                0 => Bytes::new(),
                _ => Bytes::from(format!("{i},")),
            })
            .chain([Bytes::from(vec![b'x'; 300_000])])
            .collect();
        write_batch(&file, &chunks).unwrap();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_only_reaches_bytes_whose_fsync_returned() {
        let dir = TempDir::create("writer-durable");
        let (store, started, release) = gated_store(&dir);
        let mut r = store.create("stem".into()).await.unwrap();
        let mut progress = r.progress();
        let first = Bytes::from(vec![b'a'; 100_000]);
        let second = Bytes::from_static(b"second chunk\n");

        r.write(first.clone()).await.unwrap();
        assert!(r.request_sync().unwrap());
        assert!(!r.request_sync().unwrap(), "nothing new to sync");
        started
            .recv_timeout(WAIT)
            .expect("the first sync did not start");
        // The first chunk is in the file, and more is accepted, but none of
        // it is durable while the fsync has not returned.
        r.write(second.clone()).await.unwrap();
        assert_eq!(r.written(), (first.len() + second.len()) as u64);
        let on_disk = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum::<u64>();
        assert_eq!(on_disk, first.len() as u64);
        assert_eq!(r.durable().unwrap(), 0);
        assert!(r.sync_pending());

        release.send(()).unwrap();
        // Exactly what the returned fsync covered: not the chunk after it.
        assert_eq!(next_durable(&mut progress).await, first.len() as u64);
        assert!(!r.sync_pending());
        assert_eq!(r.unsynced(), second.len() as u64);

        assert!(r.request_sync().unwrap());
        started
            .recv_timeout(WAIT)
            .expect("the second sync did not start");
        assert_eq!(r.durable().unwrap(), first.len() as u64);
        release.send(()).unwrap();
        assert_eq!(
            next_durable(&mut progress).await,
            (first.len() + second.len()) as u64
        );

        let (stored, placed) = r.finish(&store, true).await;
        let path = placed.unwrap();
        assert_eq!(stored, (first.len() + second.len()) as u64);
        assert_eq!(path.file_name().unwrap(), "stem.cast");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [&first[..], &second[..]].concat()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_holds_the_upload_back_until_the_disk_catches_up() {
        let dir = TempDir::create("writer-queue");
        let (store, started, release) = gated_store(&dir);
        let mut r = store.create("stem".into()).await.unwrap();
        r.write(Bytes::from_static(b"x")).await.unwrap();
        r.request_sync().unwrap();
        started.recv_timeout(WAIT).expect("the sync did not start");
        // While the disk is busy the queue fills up to its cap, then writing
        // waits: the upload is not read further.
        let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
        for _ in 0..MAX_QUEUED / chunk.len() {
            tokio::time::timeout(WAIT, r.write(chunk.clone()))
                .await
                .expect("room in the queue")
                .unwrap();
        }
        {
            let mut blocked = std::pin::pin!(r.write(Bytes::from_static(b"z")));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                blocked.as_mut().poll(&mut cx).is_pending(),
                "a full queue must hold the writer back"
            );
            release.send(()).unwrap();
            tokio::time::timeout(WAIT, blocked)
                .await
                .expect("room after the sync")
                .unwrap();
        }
        let (stored, placed) = r.finish(&store, true).await;
        let expected = 1 + MAX_QUEUED + 1;
        assert_eq!(stored, expected as u64);
        assert_eq!(std::fs::read(placed.unwrap()).unwrap().len(), expected);
    }
}
