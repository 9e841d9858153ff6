//! The `--audit-*` flags, named as kube-apiserver names them.

use super::super::parse_duration;
use std::path::PathBuf;
use std::time::Duration;

/// `--audit-webhook-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Batch,
    Blocking,
}

/// `--audit-overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OverflowArg {
    /// Back-pressure: the request waits for room (bounded).
    Block,
    /// The request is refused (503), never served unaudited.
    FailClosed,
}

/// The audit flags (kube-apiserver's names where it has the flag).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Audit webhook (kubeconfig format, as kube-apiserver reads it). Without
    /// it, auditing is off.
    #[arg(long)]
    pub audit_webhook_config_file: Option<PathBuf>,
    /// batch (buffered, retried) or blocking (each event sent while the
    /// request waits).
    #[arg(long, value_enum, default_value = "batch")]
    pub audit_webhook_mode: ModeArg,
    #[arg(long, default_value_t = 10_000)]
    pub audit_webhook_batch_buffer_size: usize,
    #[arg(long, default_value_t = 400)]
    pub audit_webhook_batch_max_size: usize,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub audit_webhook_batch_max_wait: Duration,
    /// Batches per second (0 = no throttle).
    #[arg(long, default_value_t = 10.0)]
    pub audit_webhook_batch_throttle_qps: f64,
    #[arg(long, default_value_t = 15)]
    pub audit_webhook_batch_throttle_burst: u32,
    /// First retry delay (doubled per failure, capped at 5 min).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub audit_webhook_initial_backoff: Duration,
    /// Audit policy (YAML or JSON, audit.k8s.io/v1 Policy). Default: every
    /// request at Metadata.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Directory of the spill queue and the dead-letter file.
    #[arg(long, default_value = "./audit-spill")]
    pub audit_spill_dir: PathBuf,
    /// Spill file bound in bytes (0 = no spilling).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub audit_spill_max_bytes: u64,
    /// Buffer and spill file full: wait for room, or refuse the request.
    #[arg(long, value_enum, default_value = "block")]
    pub audit_overflow: OverflowArg,
    /// Blocking mode: refuse the request (503) when its RequestReceived
    /// event could not be delivered (default: log, count, dead-letter, serve).
    #[arg(long)]
    pub audit_webhook_blocking_fail_closed: bool,
}
