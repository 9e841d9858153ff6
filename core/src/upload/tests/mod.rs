//! The upload machine as specifications: a fake clock (a base instant plus
//! offsets), inputs in, outputs checked one by one.

mod failover;
mod v1;
mod v2;
mod wire;

use super::*;

/// Any instant will do as the start: only differences matter.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

const A: &str = "http://rec-a:8080";
const B: &str = "https://rec-b.example";

struct Harness {
    up: Upload,
    t0: Instant,
}

impl Harness {
    fn new(config: UploadConfig) -> Self {
        let t0 = base_instant();
        let up = Upload::new(t0, config).unwrap();
        Harness { up, t0 }
    }

    fn with(recorders: &[&str]) -> Self {
        Harness::new(UploadConfig::with_recorders(recorders).unwrap())
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self) -> Vec<UploadOutput> {
        std::iter::from_fn(|| self.up.poll_output()).collect()
    }

    fn push(&mut self, ms: u64, bytes: &'static [u8]) {
        let now = self.at(ms);
        self.up.push_cast(now, Bytes::from_static(bytes));
    }

    /// Drives the current v2 attempt from `Connect` to open.
    fn open_v2(&mut self, ms: u64, attempt: AttemptId) -> Vec<UploadOutput> {
        let now = self.at(ms);
        self.up.handle_connected(now, attempt);
        self.up.handle_probe_response(now, attempt, 200, true);
        self.up.handle_v2_response_head(now, attempt, 200);
        self.drain()
    }

    /// Drives the current v1 attempt from `Connect` to open (via `100`).
    fn open_v1(&mut self, ms: u64, attempt: AttemptId) -> Vec<UploadOutput> {
        let now = self.at(ms);
        self.up.handle_connected(now, attempt);
        self.up
            .handle_v1_bytes(now, attempt, b"HTTP/1.1 100 Continue\r\n\r\n");
        self.drain()
    }
}

fn connect_id(outputs: &[UploadOutput]) -> AttemptId {
    outputs
        .iter()
        .find_map(|o| match o {
            UploadOutput::Connect { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("a Connect output")
}

fn sent_bytes(outputs: &[UploadOutput]) -> Vec<u8> {
    outputs
        .iter()
        .filter_map(|o| match o {
            UploadOutput::Send { bytes, .. } => Some(bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn failure(outputs: &[UploadOutput]) -> UploadFailure {
    outputs
        .iter()
        .find_map(|o| match o {
            UploadOutput::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .expect("a Failed output")
}

fn addr(s: &str) -> RecorderAddr {
    s.parse().unwrap()
}
