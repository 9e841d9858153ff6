//! How a file sink names a session's cast: the temporary name it writes
//! to (the pattern `kubecast recorder`'s store recovers after a crash),
//! the sanitised stem, and the final names tried in order — never
//! replacing an existing file — and [`CastFile`], the sink's bookkeeping.
//! The adapters do the filesystem calls.

use crate::session::SessionEvent;
use std::path::{Path, PathBuf};

/// Longest stem kept (bytes).
const MAX_STEM: usize = 200;
/// Collisions tried before giving up on a final name.
pub const MAX_COLLISIONS: u32 = 10_000;

/// The hidden temporary name for the `n`th sink of process `pid`.
pub fn temp_name(pid: u32, n: u64) -> String {
    format!(".kubecast-{pid}-sink-{n}.partial")
}

/// The final file names for `stem`, in the order to try them:
/// `STEM.cast`, `STEM_2.cast`, … (`STEM_incomplete.cast`, … when the
/// recording did not end properly), at most [`MAX_COLLISIONS`].
pub fn final_names(stem: &str, complete: bool) -> impl Iterator<Item = String> + '_ {
    (0..MAX_COLLISIONS).map(move |n| final_name(stem, n, complete))
}

/// The final file name for `stem`, the `n`th try (0 = no counter).
fn final_name(stem: &str, n: u32, complete: bool) -> String {
    let counter = if n == 0 {
        String::new()
    } else {
        format!("_{}", n + 1)
    };
    let outcome = if complete { "" } else { "_incomplete" };
    format!("{stem}{counter}{outcome}.cast")
}

/// `raw` as a safe file stem: `[A-Za-z0-9._@+-]` (anything else becomes
/// `-`), no leading dot, at most 200 bytes, never empty.
pub fn sanitise(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@' | '+') {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_start_matches('.').to_string();
    out.truncate(MAX_STEM);
    if out.is_empty() {
        "session".into()
    } else {
        out
    }
}

/// Why the final names ran out.
pub fn exhausted(stem: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "more than {MAX_COLLISIONS} recordings named {stem}"
    ))
}

/// A file sink's state apart from the open file: where it writes, whether
/// the recording ended properly, what was written and where it was placed.
///
/// The rules both adapters' `FileSink` follow:
///
/// - nothing touches the disk until the first cast bytes arrive: a
///   connection passed through unrecorded (discovery GETs, port-forward)
///   leaves no file;
/// - the cast is written to a hidden temporary file in `DIR`
///   ([`temp_name`]: the pattern `kubecast recorder` recovers after a
///   crash) and, when the sink finishes, synced and given its final name
///   with `link` + `unlink`, which never replaces an existing file:
///   `STEM.cast`, else `STEM_2.cast`, … ([`CastFile::targets`]);
/// - a recording that did not end properly (no `RecordingFinished`, or a
///   write failed) is kept as `STEM_incomplete.cast`: nothing is silently
///   dropped;
/// - the stem is sanitised ([`sanitise`]).
#[derive(Debug, Clone)]
pub struct CastFile {
    dir: PathBuf,
    stem: String,
    complete: bool,
    failed: bool,
    written: u64,
    path: Option<PathBuf>,
}

impl CastFile {
    /// For `DIR/STEM.cast`; the stem is sanitised.
    pub fn new(dir: PathBuf, stem: &str) -> CastFile {
        CastFile {
            dir,
            stem: sanitise(stem),
            complete: false,
            failed: false,
            written: 0,
            path: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// The temporary file for the `n`th sink of process `pid`.
    pub fn temp_path(&self, pid: u32, n: u64) -> PathBuf {
        self.dir.join(temp_name(pid, n))
    }

    /// An event of the session: `RecordingFinished` makes the cast complete.
    pub fn note_event(&mut self, event: &SessionEvent) {
        if matches!(event, SessionEvent::RecordingFinished(_)) {
            self.complete = true;
        }
    }

    /// A write of `n` cast bytes succeeded (`true`) or failed.
    pub fn note_write(&mut self, n: usize, ok: bool) {
        if ok {
            self.written += n as u64;
        } else {
            self.failed = true;
        }
    }

    /// The final paths to try, once the file is synced (`synced`): complete
    /// names only if the recording finished, no write failed and the sync
    /// worked.
    pub fn targets(&self, synced: bool) -> impl Iterator<Item = PathBuf> + '_ {
        let complete = self.complete && !self.failed && synced;
        final_names(&self.stem, complete).map(|name| self.dir.join(name))
    }

    /// Where the cast was placed.
    pub fn placed(&mut self, path: PathBuf) {
        self.path = Some(path);
    }

    /// Where the recording was placed, once finished (`None` when there
    /// was nothing to record).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Cast bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_sanitised_and_names_never_repeat() {
        assert_eq!(sanitise("../../etc/passwd"), "-..-etc-passwd");
        assert_eq!(sanitise(".hidden"), "hidden");
        assert_eq!(sanitise(""), "session");
        assert_eq!(sanitise("ns_pod_alice@corp"), "ns_pod_alice@corp");
        let names: Vec<String> = final_names("s", true).take(2).collect();
        assert_eq!(names, ["s.cast", "s_2.cast"]);
        assert_eq!(
            final_names("s", false).nth(1).as_deref(),
            Some("s_2_incomplete.cast")
        );
        assert_eq!(final_names("s", true).count(), MAX_COLLISIONS as usize);
        assert_eq!(temp_name(7, 3), ".kubecast-7-sink-3.partial");
    }
}
