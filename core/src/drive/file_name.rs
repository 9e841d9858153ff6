//! How a file sink names a session's cast: the temporary name it writes
//! to (the pattern `kubecast recorder`'s store recovers after a crash),
//! the sanitised stem, and the final names tried in order — never
//! replacing an existing file. The adapters do the filesystem calls.

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
