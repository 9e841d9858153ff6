//! `termout N`: a large, paced stream of terminal-like output, for load
//! tests (`kubecast-load`).
//!
//! `bigout` builds its whole output in memory and writes it at once, which
//! is right for exact-content tests of a few megabytes but not for a
//! gigabyte. `termout` cycles through one mebibyte of text (so memory stays
//! constant), writes it in [`TERMOUT_CHUNK`]-byte pieces (the size of the
//! kubelet's copy buffer) and paces itself by its reader: it is never more
//! than [`TERMOUT_WINDOW`] writes ahead, and every stdin byte it reads lets
//! it write [`TERMOUT_GRANT`] more. The sim's output channels are unbounded,
//! so without this a fast producer would queue the whole stream in memory
//! whenever the client (or a proxy in between) is slower than the generator.

use std::sync::OnceLock;

use super::{Read, Stdio};

/// Bytes per write of `termout`.
pub const TERMOUT_CHUNK: usize = 32 * 1024;
/// Writes `termout` makes before it needs its reader's first stdin byte.
pub const TERMOUT_WINDOW: usize = 64;
/// Writes each stdin byte allows: a reader sends one byte for every
/// `TERMOUT_GRANT * TERMOUT_CHUNK` bytes of output it has received.
pub const TERMOUT_GRANT: usize = 16;

/// Length of the text `termout` cycles through: a whole number of chunks,
/// so no write wraps around, and valid UTF-8 as a whole, so the stream stays
/// valid however often it repeats (single writes still cut characters, as
/// real output read in fixed-size pieces does).
const PATTERN_LEN: usize = 32 * TERMOUT_CHUNK;

/// Runs `termout N`: exactly `n` bytes of [`terminal_text`], paced by stdin.
/// Returns the exit status (130 on `^C`).
pub(super) async fn termout(io: &mut Stdio, n: u64) -> u8 {
    let pattern = pattern();
    let mut left = n;
    let mut credit = TERMOUT_WINDOW;
    let mut paced = true;
    let mut offset = 0;
    while left > 0 {
        while paced && credit == 0 {
            match io.read().await {
                Read::Data(bytes) => credit += bytes.len() * TERMOUT_GRANT,
                // A reader that closes stdin cannot pace us: write the rest,
                // as a process that never reads its stdin would.
                Read::Eof => paced = false,
                Read::Interrupt => return 130,
                Read::Resize { .. } => {}
            }
        }
        let len = usize::try_from(left).map_or(TERMOUT_CHUNK, |l| l.min(TERMOUT_CHUNK));
        io.stdout(&pattern[offset..offset + len]);
        offset = (offset + TERMOUT_CHUNK) % PATTERN_LEN;
        left -= len as u64;
        credit = credit.saturating_sub(1);
    }
    0
}

fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| terminal_text(PATTERN_LEN))
}

/// Exactly `n` bytes of valid UTF-8 that look like a busy terminal: log
/// lines with dim timestamps and coloured levels, box drawing, progress
/// bars, accented Latin, CJK and emoji (about a sixth of the bytes belong
/// to multi-byte characters), CRLF line ends. Deterministic.
pub fn terminal_text(n: usize) -> Vec<u8> {
    const LEVELS: [(&str, u8); 4] = [("INFO ", 2), ("WARN ", 3), ("DEBUG", 6), ("ERROR", 1)];
    const MESSAGES: [&str; 6] = [
        "GET /api/v1/namespaces/default/pods → 200 OK in 3 ms",
        "café résumé naïve façade: cache hit ratio 0.97",
        "温度 23 °C — 湿度 45 % — 风速 3 m/s",
        "✔ build passed 🚀 (14 tests, 0 failures)",
        "▕██████████▌       ▏ 63 % ░░ eta 00:42",
        "plain ASCII line with some padding to look like a stack trace frame",
    ];
    let mut out = Vec::with_capacity(n);
    for i in 0usize.. {
        let (level, colour) = LEVELS[i % LEVELS.len()];
        let line = format!(
            "\x1b[2m2026-11-25 12:{:02}:{:02}.{:03}\x1b[0m \x1b[3{colour}m{level}\x1b[0m worker-{} │ {}\r\n",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000,
            i % 7,
            MESSAGES[i % MESSAGES.len()],
        );
        if out.len() + line.len() > n {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    // Pad with ASCII so the length is exact and the text stays valid.
    out.resize(n, b' ');
    out
}

#[cfg(test)]
mod tests {
    use super::super::{spawn, Input, Output};
    use super::*;

    #[test]
    fn terminal_text_is_exact_valid_utf8_with_escapes_and_wide_characters() {
        for n in [0, 1, 100, 4096, PATTERN_LEN] {
            let text = terminal_text(n);
            assert_eq!(text.len(), n);
            assert!(std::str::from_utf8(&text).is_ok());
        }
        let text = String::from_utf8(terminal_text(64 * 1024)).unwrap();
        let multibyte: usize = text
            .chars()
            .filter(|c| !c.is_ascii())
            .map(char::len_utf8)
            .sum();
        assert!(text.contains("\x1b[31mERROR"));
        assert!(multibyte * 10 > text.len(), "{multibyte} of {}", text.len());
    }

    /// Reads output until `want` bytes arrived or the process stops writing.
    async fn drain(p: &mut super::super::Process, want: usize) -> usize {
        let mut got = 0;
        while got < want {
            let next = tokio::time::timeout(std::time::Duration::from_millis(200), p.output.recv());
            match next.await {
                Ok(Some(Output::Stdout(b))) => got += b.len(),
                _ => break,
            }
        }
        got
    }

    #[tokio::test]
    async fn termout_writes_a_window_then_one_grant_per_stdin_byte_and_exactly_n_bytes() {
        let n = (TERMOUT_WINDOW + 3 * TERMOUT_GRANT) * TERMOUT_CHUNK + 5;
        let mut p = spawn(vec!["termout".into(), n.to_string()], None);
        // Unacknowledged, it stops after the window.
        let window = TERMOUT_WINDOW * TERMOUT_CHUNK;
        assert_eq!(drain(&mut p, usize::MAX).await, window);
        // One stdin byte: one grant more.
        p.input.send(Input::Stdin(b"+".to_vec())).unwrap();
        assert_eq!(
            drain(&mut p, usize::MAX).await,
            TERMOUT_GRANT * TERMOUT_CHUNK
        );
        // Two bytes in one read: two grants; the rest after the last one.
        p.input.send(Input::Stdin(b"++".to_vec())).unwrap();
        p.input.send(Input::Stdin(b"+".to_vec())).unwrap();
        let rest = n - window - TERMOUT_GRANT * TERMOUT_CHUNK;
        assert_eq!(drain(&mut p, usize::MAX).await, rest);
        assert!(p.output.recv().await.is_none(), "the process ended");
        assert_eq!(p.exit.await.unwrap(), super::super::Exit::Code(0));
    }

    #[tokio::test]
    async fn termout_stops_pacing_when_stdin_closes_and_repeats_valid_text() {
        let n = 3 * PATTERN_LEN + 7;
        let mut p = spawn(vec!["termout".into(), n.to_string()], None);
        p.input.send(Input::StdinEof).unwrap();
        let mut all = Vec::new();
        while let Some(Output::Stdout(b)) = p.output.recv().await {
            all.extend_from_slice(&b);
        }
        assert_eq!(all.len(), n);
        assert!(std::str::from_utf8(&all).is_ok());
        assert_eq!(&all[PATTERN_LEN..2 * PATTERN_LEN], pattern());
    }
}
