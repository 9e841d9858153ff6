//! The file store: one `.cast` file per recording in the recorder's directory.
//!
//! A recording is written to a hidden temporary file (`.kubecast-<pid>-<n>.partial`)
//! and, when the upload ends, given its final name with `link` + `unlink`, which
//! never replaces an existing file (a counter is added on collision). The final
//! name is
//!
//! ```text
//! 20261101T120304Z_<namespace>_<pod>_<user>[_<n>][_incomplete].cast
//! ```
//!
//! so that `ls` sorts recordings by session start and shows who and where.
//! Every component is sanitised ([`sanitise`]): the fields are separated by `_`,
//! which never occurs inside a field.

use super::writer::{BeforeSync, Recording};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::fs::OpenOptions;

/// Longest cast header line accepted (bytes, without the newline).
pub const MAX_HEADER_LINE: usize = 64 * 1024;
/// Longest name component after sanitising.
const MAX_COMPONENT: usize = 63;
/// Collisions tried before giving up on a name.
const MAX_COLLISIONS: u32 = 10_000;
const PARTIAL_PREFIX: &str = ".kubecast-";
const PARTIAL_SUFFIX: &str = ".partial";

/// What the server takes from a valid cast header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The header's `timestamp` (Unix seconds), if present and sane.
    pub timestamp: Option<u64>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub user: Option<String>,
}

/// Checks that `line` (the cast's first line, without its newline) is an
/// asciicast v2 header and extracts what names the file.
pub fn parse_header(line: &[u8]) -> Result<HeaderInfo, String> {
    if line.len() > MAX_HEADER_LINE {
        return Err(format!(
            "the first line is longer than {MAX_HEADER_LINE} bytes"
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| format!("the first line is not an asciicast v2 header (not JSON: {e})"))?;
    let object = value
        .as_object()
        .ok_or("the first line is not an asciicast v2 header (not a JSON object)")?;
    if object.get("version").and_then(|v| v.as_u64()) != Some(2) {
        return Err("the first line is not an asciicast v2 header (\"version\" is not 2)".into());
    }
    for key in ["width", "height"] {
        if !object.get(key).is_some_and(|v| v.is_u64()) {
            return Err(format!(
                "the first line is not an asciicast v2 header (\"{key}\" is not a non-negative integer)"
            ));
        }
    }
    // 253402300799 is 9999-12-31T23:59:59Z: beyond it the name would not sort.
    let timestamp = object
        .get("timestamp")
        .and_then(|t| {
            t.as_u64()
                .or_else(|| t.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
        .filter(|t| *t <= 253_402_300_799);
    let k8s = object.get("kubernetes").and_then(|k| k.as_object());
    let field = |name: &str| {
        k8s.and_then(|k| k.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(HeaderInfo {
        timestamp,
        namespace: field("namespace"),
        pod: field("pod"),
        container: field("container"),
        user: field("user"),
    })
}

/// Makes one name component safe: ASCII letters, digits, `-`, `.`, `@` and `+`
/// are kept, anything else (including `/`, `_`, `:`, control characters and
/// non-ASCII) becomes `-`; runs of dots collapse to one; leading and trailing
/// dots and dashes go; at most 63 bytes; an empty result is `unknown`.
pub fn sanitise(raw: Option<&str>) -> String {
    let mut out = String::new();
    for c in raw.unwrap_or("").chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '@' | '+') {
            c
        } else {
            '-'
        };
        if c == '.' && out.ends_with('.') {
            continue;
        }
        out.push(c);
        if out.len() >= MAX_COMPONENT * 2 {
            break;
        }
    }
    let trimmed = out.trim_matches(|c| c == '.' || c == '-');
    let mut s: String = trimmed.chars().take(MAX_COMPONENT).collect();
    while s.ends_with('.') || s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for Unix seconds.
pub fn format_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The final name's stem (without counter, outcome and extension).
pub fn stem(info: &HeaderInfo, received: SystemTime) -> String {
    let secs = info.timestamp.unwrap_or_else(|| {
        received
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    format!(
        "{}_{}_{}_{}",
        format_timestamp(secs),
        sanitise(info.namespace.as_deref()),
        sanitise(info.pod.as_deref()),
        sanitise(info.user.as_deref())
    )
}

/// The final file name for `stem`, the `n`th try (0 = no counter).
pub fn final_name(stem: &str, n: u32, complete: bool) -> String {
    let counter = if n == 0 {
        String::new()
    } else {
        format!("_{}", n + 1)
    };
    let outcome = if complete { "" } else { "_incomplete" };
    format!("{stem}{counter}{outcome}.cast")
}

/// The recordings directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    next: AtomicU64,
    before_sync: BeforeSync,
}

impl Store {
    /// Opens (creating if needed) `dir` and recovers temporary files left by a
    /// previous run that was killed: each becomes an `_incomplete` recording.
    pub fn open(dir: &Path) -> io::Result<(Store, Vec<PathBuf>)> {
        std::fs::create_dir_all(dir)?;
        let store = Store {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(0),
            before_sync: BeforeSync::default(),
        };
        let mut recovered = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX)) {
                continue;
            }
            let path = entry.path();
            let info = std::fs::File::open(&path)
                .ok()
                .and_then(|f| first_line(f).ok())
                .and_then(|line| parse_header(&line).ok())
                .unwrap_or_default();
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            let stem = stem(&info, modified);
            recovered.push(place(dir, &path, &stem, false)?);
        }
        Ok((store, recovered))
    }

    /// Test only: `hook` runs before every fsync of a recording.
    pub fn before_sync(mut self, hook: BeforeSync) -> Store {
        self.before_sync = hook;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new temporary file for a recording.
    pub async fn create(&self, stem: String) -> io::Result<Recording> {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let tmp = self.dir.join(format!(
                "{PARTIAL_PREFIX}{}-{n}{PARTIAL_SUFFIX}",
                std::process::id()
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
            {
                Ok(file) => {
                    let file = file.into_std().await;
                    return Ok(Recording::start(file, tmp, stem, self.before_sync.clone()));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Gives `tmp` its final name in `dir` without ever replacing an existing
/// file: `link` fails if the name exists, and only then is `tmp` unlinked.
pub(super) fn place(dir: &Path, tmp: &Path, stem: &str, complete: bool) -> io::Result<PathBuf> {
    for n in 0..MAX_COLLISIONS {
        let target = dir.join(final_name(stem, n, complete));
        match std::fs::hard_link(tmp, &target) {
            Ok(()) => {
                std::fs::remove_file(tmp)?;
                sync_dir(dir);
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // A filesystem without hard links: check, then rename. Racy
                // against another writer of the same name, so best effort.
                if std::fs::symlink_metadata(&target).is_ok() {
                    continue;
                }
                std::fs::rename(tmp, &target)?;
                sync_dir(dir);
                return Ok(target);
            }
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_COLLISIONS} recordings named {stem}"
    )))
}

/// Fsyncs a directory so a rename survives a crash (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The first line of a file, up to [`MAX_HEADER_LINE`] bytes.
fn first_line(file: std::fs::File) -> io::Result<Vec<u8>> {
    use std::io::{BufRead, BufReader, Read};
    let mut line = Vec::new();
    BufReader::new(file)
        .take(MAX_HEADER_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_timestamp(0), "19700101T000000Z");
        assert_eq!(format_timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(format_timestamp(1_793_534_584), "20261101T120304Z");
        assert_eq!(format_timestamp(253_402_300_799), "99991231T235959Z");
    }

    #[test]
    fn hostile_components_are_sanitised() {
        assert_eq!(sanitise(Some("../../etc/passwd")), "etc-passwd");
        assert_eq!(sanitise(Some("..")), "unknown");
        assert_eq!(sanitise(Some("a\u{0}b\nc\u{7f}")), "a-b-c");
        assert_eq!(
            sanitise(Some("system:serviceaccount:ns:sa")),
            "system-serviceaccount-ns-sa"
        );
        assert_eq!(sanitise(Some("a_b")), "a-b");
        assert_eq!(sanitise(Some("x...y")), "x.y");
        assert_eq!(sanitise(Some("élan")), "lan");
        assert_eq!(sanitise(None), "unknown");
        assert_eq!(sanitise(Some(&"a".repeat(1000))).len(), MAX_COMPONENT);
    }

    #[test]
    fn headers_are_checked() {
        let ok = br#"{"version":2,"width":80,"height":24,"timestamp":1793534584,"kubernetes":{"namespace":"default","pod":"web-0","user":"alice"}}"#;
        let info = parse_header(ok).unwrap();
        assert_eq!(info.timestamp, Some(1_793_534_584));
        assert_eq!(info.user.as_deref(), Some("alice"));
        assert_eq!(
            stem(&info, UNIX_EPOCH),
            "20261101T120304Z_default_web-0_alice"
        );
        assert!(parse_header(br#"{"version":3,"term":{"cols":80,"rows":24}}"#).is_err());
        assert!(parse_header(br#"{"version":2,"width":"80","height":24}"#).is_err());
        assert!(parse_header(b"hello").is_err());
        assert!(parse_header(b"[2]").is_err());
        let bare = parse_header(br#"{"version":2,"width":80,"height":24}"#).unwrap();
        assert_eq!(bare.timestamp, None);
        assert_eq!(
            stem(&bare, UNIX_EPOCH),
            "19700101T000000Z_unknown_unknown_unknown"
        );
    }

    #[test]
    fn names_carry_counter_and_outcome() {
        assert_eq!(final_name("s", 0, true), "s.cast");
        assert_eq!(final_name("s", 1, true), "s_2.cast");
        assert_eq!(final_name("s", 0, false), "s_incomplete.cast");
        assert_eq!(final_name("s", 2, false), "s_3_incomplete.cast");
    }
}
