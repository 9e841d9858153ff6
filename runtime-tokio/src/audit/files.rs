//! The sink's two files, each operation a small blocking function run on
//! tokio's blocking pool. The core decides offsets and lengths; these only
//! append, sync, read at an offset and truncate.

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The spill file's name in the spill directory.
pub const SPILL_FILE: &str = "audit-spill.kcaq";
/// The dead-letter file's name: one `EventList` JSON per line.
pub const DEAD_LETTER_FILE: &str = "audit-dead-letter.jsonl";

/// An append-only file, opened on first use (a run that never spills
/// leaves an existing spill file untouched).
#[derive(Debug)]
pub(super) struct AppendFile {
    path: PathBuf,
    file: Option<Arc<File>>,
}

impl AppendFile {
    pub(super) fn new(dir: &Path, name: &str) -> Self {
        AppendFile {
            path: dir.join(name),
            file: None,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)?,
        );
        self.file = Some(f.clone());
        Ok(f)
    }

    pub(super) async fn append(&mut self, bytes: Bytes) -> io::Result<()> {
        let f = self.file()?;
        blocking(move || append(&f, &bytes)).await
    }

    /// Appends `bytes` and a newline, as one write.
    pub(super) async fn append_line(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(bytes.len() + 1);
        line.extend_from_slice(bytes);
        line.push(b'\n');
        self.append(Bytes::from(line)).await
    }

    /// The file if it exists (reading or truncating a missing file does
    /// not create it).
    fn existing(&mut self) -> io::Result<Option<Arc<File>>> {
        if self.file.is_none() && !self.path.exists() {
            return Ok(None);
        }
        self.file().map(Some)
    }

    pub(super) async fn sync(&mut self) -> io::Result<()> {
        match self.existing()? {
            Some(f) => blocking(move || f.sync_data()).await,
            None => Ok(()),
        }
    }

    /// Up to `max` bytes at `offset`; fewer only at the end of the file.
    pub(super) async fn read_at(&mut self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        match self.existing()? {
            Some(f) => blocking(move || read_at(&f, offset, max)).await,
            None => Ok(Vec::new()),
        }
    }

    pub(super) async fn truncate(&mut self, len: u64) -> io::Result<()> {
        match self.existing()? {
            Some(f) => blocking(move || f.set_len(len)).await,
            None if len == 0 => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no spill file")),
        }
    }
}

fn append(mut f: &File, bytes: &[u8]) -> io::Result<()> {
    f.write_all(bytes)?;
    f.flush()
}

fn read_at(mut f: &File, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(max.min(1 << 20));
    f.take(max as u64).read_to_end(&mut out)?;
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("file task: {e}"))))
}
