//! Child processes of the `kubecast` binary (proxy, recorder, demo) as the
//! end-to-end tests run them: stderr kept line by line (and echoed with a
//! tag, so a failing test shows what the process said), the listening
//! address read from the log, signals, bounded waits, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to start listening, or to exit once told.
pub const PROCESS_STEP: Duration = Duration::from_secs(20);

/// A child process whose stderr is kept; killed on drop.
#[derive(Debug)]
pub struct LoggedProcess {
    child: Child,
    tag: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl LoggedProcess {
    /// Spawns `command` with stdin closed and stderr captured; stdout is
    /// left as the command has it (null unless set). Lines are echoed to the
    /// test's stderr as `[tag] line`.
    pub fn spawn(tag: &str, mut command: Command) -> LoggedProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {tag}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            let tag = tag.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{tag}] {line}");
                    lock(&log).push(line);
                }
            });
        }
        LoggedProcess {
            child,
            tag: tag.to_string(),
            log,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (for its stdout, say).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// Every stderr line so far, joined.
    pub fn log_text(&self) -> String {
        lock(&self.log).join("\n")
    }

    /// Blocks until `find` picks something out of a log line; panics after
    /// [`PROCESS_STEP`], or at once if the process exits first.
    pub fn wait_line_blocking<T>(&mut self, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + PROCESS_STEP;
        loop {
            if let Some(found) = lock(&self.log).iter().find_map(|l| find(l)) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.tag,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!("{}: no {what}:\n{}", self.tag, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `n` log lines contain every one of `needles`; returns
    /// them.
    pub async fn wait_log(&self, needles: &[&str], n: usize) -> Vec<String> {
        let deadline = Instant::now() + PROCESS_STEP;
        loop {
            let found: Vec<String> = lock(&self.log)
                .iter()
                .filter(|l| needles.iter().all(|needle| l.contains(needle)))
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no log line with {needles:?} (x{n}):\n{}",
                    self.tag,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, …) to this process only.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.tag);
    }

    /// Waits at most `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}:\n{}",
                    self.tag,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`LoggedProcess::wait_exit`] for code outside a runtime.
    pub fn wait_exit_blocking(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {timeout:?}", self.tag);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock(log: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
