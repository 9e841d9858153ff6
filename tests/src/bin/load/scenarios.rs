//! The three scenarios of issue #8, each run against one target address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubecast::sim::container::{TERMOUT_CHUNK, TERMOUT_GRANT};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::client::{Command, Exec, Protocol, STEP_TIMEOUT};

/// Sessions the concurrency scenario opens at the same moment (more would
/// only overflow listen backlogs; the sessions stay open regardless).
const OPENING_AT_ONCE: usize = 64;
/// The longest the concurrency scenario waits for all its sessions.
const CONCURRENCY_TIMEOUT: Duration = Duration::from_secs(110);
/// How often the concurrency scenario samples memory while sessions stream.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Streams `bytes` of `termout` (terminal-like output, ANSI and UTF-8) in
/// one non-tty session, acknowledging as `termout` expects; checks the byte
/// count and the exit status.
pub async fn stream(addr: SocketAddr, protocol: Protocol, bytes: u64) -> Result<(), String> {
    let count = bytes.to_string();
    let argv = ["termout", count.as_str()];
    let cmd = Command {
        pod: "worker",
        argv: &argv,
        tty: false,
    };
    let mut exec = Exec::open(addr, protocol, cmd).await?;
    let grant = (TERMOUT_GRANT * TERMOUT_CHUNK) as u64;
    let mut received = 0u64;
    let mut acked = 0u64;
    while exec.read(|b| received += b.len() as u64).await? {
        let due = received / grant;
        if due > acked && received < bytes {
            let acks = vec![b'+'; (due - acked) as usize];
            exec.stdin(&acks).await?;
            acked = due;
        }
    }
    match exec.exit().map(|s| s.code()) {
        Some(0) if received == bytes => Ok(()),
        Some(0) => Err(format!("received {received} of {bytes} bytes")),
        Some(code) => Err(format!("termout exited with {code}")),
        None => Err(format!(
            "the session ended without an exit status after {received} of {bytes} bytes"
        )),
    }
}

/// Scenario 1: one session streaming `bytes`; MiB/s.
pub async fn throughput(addr: SocketAddr, protocol: Protocol, bytes: u64) -> Result<f64, String> {
    let start = Instant::now();
    stream(addr, protocol, bytes).await?;
    Ok(mib(bytes) / start.elapsed().as_secs_f64())
}

/// p50, p99 and p99.9 of keystroke round trips, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// A tty shell that has printed its prompt.
async fn open_shell(addr: SocketAddr, protocol: Protocol) -> Result<Exec, String> {
    let argv = ["sh"];
    let cmd = Command {
        pod: "demo",
        argv: &argv,
        tty: true,
    };
    let mut exec = Exec::open(addr, protocol, cmd).await?;
    exec.resize(80, 24).await?;
    let mut seen = Vec::new();
    while !seen.ends_with(b"$ ") {
        if !exec.read(|b| seen.extend_from_slice(b)).await? {
            return Err("the shell ended before its prompt".into());
        }
    }
    Ok(exec)
}

/// Types `key` and waits for the terminal to echo it; the round trip.
async fn keystroke(exec: &mut Exec, key: u8) -> Result<Duration, String> {
    let start = Instant::now();
    exec.stdin(&[key]).await?;
    let mut echoed = false;
    while !echoed {
        if !exec.read(|b| echoed |= b.contains(&key)).await? {
            return Err("the shell ended while typing".into());
        }
    }
    Ok(start.elapsed())
}

/// Ends a shell: `^C` drops the typed line, `exit 0` ends it.
async fn exit_shell(mut exec: Exec) -> Result<(), String> {
    exec.stdin(b"\x03exit 0\r").await?;
    match exec.wait_exit().await? {
        0 => Ok(()),
        code => Err(format!("the shell exited with {code}")),
    }
}

/// Scenario 2: `keys` single keystrokes echoed by a tty (after a tenth as
/// many unmeasured warm-up keys).
pub async fn latency(
    addr: SocketAddr,
    protocol: Protocol,
    keys: usize,
) -> Result<Percentiles, String> {
    let mut exec = open_shell(addr, protocol).await?;
    let warmup = (keys / 10).min(1000);
    let mut rtts = Vec::with_capacity(keys);
    for i in 0..warmup + keys {
        let key = b'a' + (i % 26) as u8;
        let rtt = keystroke(&mut exec, key).await?;
        if i >= warmup {
            rtts.push(rtt.as_secs_f64() * 1e6);
        }
    }
    exit_shell(exec).await?;
    if rtts.is_empty() {
        return Err("no keystrokes measured".into());
    }
    rtts.sort_by(f64::total_cmp);
    let at = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    Ok(Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    })
}

/// What the concurrency scenario measured.
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// Sessions that failed, with why (the first few).
    pub failed: usize,
    pub first_errors: Vec<String>,
    /// Output of the busy sessions together, MiB/s.
    pub mib_per_s: f64,
    /// Intermediary memory growth per idle session, KiB.
    pub idle_kib: Option<f64>,
    /// Peak intermediary memory growth per session with everything running.
    pub peak_kib: Option<f64>,
}

/// Scenario 3: `sessions` at once — idle tty shells (they open, show a
/// prompt, wait, answer one keystroke at the end and exit) and
/// `busy_percent` % (at least one) busy ones streaming `busy_bytes` each,
/// protocols in turn. `rss` reads the intermediary's memory in KiB.
pub async fn concurrency(
    addr: SocketAddr,
    protocols: &[Protocol],
    sessions: usize,
    busy_percent: usize,
    busy_bytes: u64,
    rss: &dyn Fn() -> Option<u64>,
) -> Result<Concurrency, String> {
    let busy = (sessions * busy_percent / 100).clamp(1, sessions);
    let idle = sessions - busy;
    let before = rss();
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (release_tx, release_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();

    let mut idle_tasks = Vec::with_capacity(idle);
    for i in 0..idle {
        let protocol = protocols[i % protocols.len()];
        let opening = opening.clone();
        let ready = ready_tx.clone();
        let mut release = release_rx.clone();
        idle_tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let opened = open_shell(addr, protocol).await;
            drop(permit);
            let _ = ready.send(());
            let mut exec = opened?;
            tokio::time::timeout(CONCURRENCY_TIMEOUT, release.wait_for(|go| *go))
                .await
                .map_err(|_| "never released".to_string())?
                .map_err(|_| "the scenario was abandoned".to_string())?;
            keystroke(&mut exec, b'k').await?;
            exit_shell(exec).await
        }));
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + CONCURRENCY_TIMEOUT;
    for _ in 0..idle {
        if tokio::time::timeout_at(deadline, ready_rx.recv())
            .await
            .is_err()
        {
            return Err(format!(
                "{idle} idle sessions did not open in {CONCURRENCY_TIMEOUT:?}"
            ));
        }
    }
    let all_idle = rss();

    let start = Instant::now();
    let busy_tasks: Vec<_> = (0..busy)
        .map(|i| {
            let protocol = protocols[(idle + i) % protocols.len()];
            tokio::spawn(async move { stream(addr, protocol, busy_bytes).await })
        })
        .collect();
    let mut peak = all_idle;
    let mut results = Vec::with_capacity(sessions);
    for task in busy_tasks {
        let mut task = std::pin::pin!(task);
        loop {
            tokio::select! {
                done = &mut task => {
                    results.push(done.unwrap_or_else(|e| Err(format!("task failed: {e}"))));
                    break;
                }
                _ = tokio::time::sleep(RSS_SAMPLE_EVERY) => {
                    peak = peak.max(rss());
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = release_tx.send(true);
    for task in idle_tasks {
        results.push(
            task.await
                .unwrap_or_else(|e| Err(format!("task failed: {e}"))),
        );
    }
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    let per = |after: Option<u64>, n: usize| match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    Ok(Concurrency {
        failed: errors.len(),
        first_errors: errors.into_iter().take(5).collect(),
        mib_per_s: mib(busy_bytes * busy as u64) / elapsed,
        idle_kib: per(all_idle, idle),
        peak_kib: per(peak, sessions),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The longest a whole scenario may take before it counts as failed.
pub fn scenario_timeout(bytes: u64) -> Duration {
    // A step timeout, plus a second per 16 MiB (a generous floor of 16 MiB/s).
    STEP_TIMEOUT + Duration::from_secs(bytes / (16 << 20))
}
