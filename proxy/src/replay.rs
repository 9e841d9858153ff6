//! `kubecast replay`: a capture in, its cast out — byte for byte the cast a
//! live session with the same bytes would have recorded.

use kubecast_core::replay::replay;
use kubecast_core::session::{SessionConfig, SessionEvent, SessionMeta};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Replays `capture` and writes the cast to `out` (stdout when `None`).
pub fn run(capture: &Path, out: Option<&Path>, config: SessionConfig) -> Result<(), String> {
    let bytes = std::fs::read(capture).map_err(|e| format!("{}: {e}", capture.display()))?;
    let result = replay(&bytes, config, SessionMeta::default(), Instant::now(), None)
        .map_err(|e| format!("{}: {e}", capture.display()))?;
    for event in &result.events {
        if let SessionEvent::DecodeFailed { message } = event {
            eprintln!(
                "kubecast: warning: {}: recording stopped early: {message}",
                capture.display()
            );
        }
    }
    if !result
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Upgraded(_)))
    {
        return Err(format!(
            "{}: no exec/attach session was upgraded in this capture; nothing to record",
            capture.display()
        ));
    }
    match out {
        Some(path) => {
            std::fs::write(path, &result.cast).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&result.cast)
                .and_then(|()| stdout.flush())
                .map_err(|e| e.to_string())
        }
    }
}
