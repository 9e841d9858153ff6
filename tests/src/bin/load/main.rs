//! `kubecast-load`: measures `kubecast proxy` against pass-through baselines
//! in one run (issue #8). See `docs/benchmarks.md` for what it measures and
//! how to read the table.
//!
//! ```sh
//! cargo build --release -p kubecast -p kubecast-tests
//! target/release/kubecast-load --markdown load.md      # full size: 1 GiB, 10 000 keys, 100 and 1000 sessions
//! target/release/kubecast-load --mib 4 --keys 100 --sessions 10 --busy-mib 1   # seconds
//! ```
//!
//! The upstream is the in-process `kubecast::sim::TestUpstream`; the relays,
//! the proxy and the recorder are separate processes (the proxy and recorder
//! are the `kubecast` binary found next to this one, or `--kubecast`).

mod client;
mod relay;
mod report;
mod scenarios;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kubecast::sim::TestUpstream;

use client::Protocol;
use report::{Cell, Table, Unit};
use targets::{Binaries, Kind, Running};

#[derive(Debug, Parser)]
#[command(
    name = "kubecast-load",
    about = "Load generator: kubecast proxy against pass-through baselines"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Runs the scenarios (the default).
    Run(RunArgs),
    /// A plain tokio `copy_bidirectional` TCP relay (a baseline target).
    Relay {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
    },
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// The `kubecast` binary (default: next to this one).
    #[arg(long)]
    kubecast: Option<PathBuf>,
    /// The `socat` binary.
    #[arg(long, default_value = "socat")]
    socat: PathBuf,
    /// Targets, comma separated: direct, socat, relay, proxy, proxy-dir, proxy-recorder.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,socat,relay,proxy,proxy-dir,proxy-recorder"
    )]
    targets: Vec<String>,
    /// Protocols, comma separated: ws-v5, ws-v4, spdy-v4.
    #[arg(long, value_delimiter = ',', default_value = "ws-v5,ws-v4,spdy-v4")]
    protocols: Vec<String>,
    /// Scenarios, comma separated and run in this order: latency,
    /// throughput, concurrency. Latency and throughput share one set of
    /// processes per target (latency first, so it meets fresh ones); each
    /// concurrency run gets its own.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,concurrency"
    )]
    scenarios: Vec<String>,
    /// Throughput: MiB streamed by the one session.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Latency: keystrokes measured.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Concurrency: session counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    sessions: Vec<usize>,
    /// Concurrency: percentage of the sessions that stream (the rest idle).
    #[arg(long, default_value_t = 10)]
    busy_percent: usize,
    /// Concurrency: MiB each busy session streams.
    #[arg(long, default_value_t = 16)]
    busy_mib: u64,
    /// Rounds: every target runs every scenario once per round, targets in
    /// turn, so each proxy figure has a baseline measured close to it. The
    /// table shows medians; ratios are medians of per-round ratios.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubecast-load: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Sub::Relay { listen, to }) => runtime
            .block_on(relay::run(listen, to))
            .map_err(|e| format!("relay: {e}")),
        Some(Sub::Run(args)) => runtime.block_on(run(args)),
        None => runtime.block_on(run(cli.run)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubecast-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a comma-separated list with `parse`, naming the bad entry.
fn parse_list<T>(
    items: &[String],
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    items
        .iter()
        .map(|s| parse(s.trim()).ok_or_else(|| format!("unknown {what} {s:?}")))
        .collect()
}

async fn run(args: RunArgs) -> Result<(), String> {
    let kinds = parse_list(&args.targets, "target", Kind::parse)?;
    let protocols = parse_list(&args.protocols, "protocol", Protocol::parse)?;
    let scenarios = parse_list(&args.scenarios, "scenario", |s| {
        ["throughput", "latency", "concurrency"]
            .into_iter()
            .find(|n| *n == s)
    })?;
    if protocols.is_empty() || kinds.is_empty() {
        return Err("no protocols or no targets".into());
    }
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let bins = Binaries {
        kubecast: args
            .kubecast
            .clone()
            .unwrap_or_else(|| me.with_file_name("kubecast")),
        socat: args.socat.clone(),
        load: me,
    };
    let scratch = std::env::temp_dir().join(format!("kubecast-load-{}", std::process::id()));
    let upstream = TestUpstream::start().await;
    let mut table = Table::new(&kinds);
    for round in 0..args.rounds as usize {
        table.start_round(round);
        if args.rounds > 1 {
            eprintln!("round {} of {}", round + 1, args.rounds);
        }
        for kind in &kinds {
            let mut ctx = Context {
                kind: *kind,
                round: (args.rounds > 1).then_some(round),
                upstream: upstream.addr(),
                bins: &bins,
                scratch: &scratch,
                table: &mut table,
            };
            if scenarios.contains(&"throughput") || scenarios.contains(&"latency") {
                ctx.single_sessions(&args, &protocols, &scenarios).await;
            }
            if scenarios.contains(&"concurrency") {
                for &sessions in &args.sessions {
                    ctx.concurrency(&args, &protocols, sessions).await;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let markdown = table.markdown();
    println!("{markdown}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    match table.errors.len() {
        0 => Ok(()),
        n => Err(format!("{n} scenario(s) failed (see the table's errors)")),
    }
}

/// One target's runs, filling its column.
struct Context<'a> {
    kind: Kind,
    /// The round, when there are several (for error messages).
    round: Option<usize>,
    upstream: SocketAddr,
    bins: &'a Binaries,
    scratch: &'a std::path::Path,
    table: &'a mut Table,
}

impl Context<'_> {
    fn start(&mut self) -> Option<Running> {
        match Running::start(self.kind, self.upstream, self.bins, self.scratch) {
            Ok(running) => Some(running),
            Err(e) => {
                self.fail(format!("starting: {e}"));
                None
            }
        }
    }

    fn fail(&mut self, e: String) {
        let who = match self.round {
            Some(round) => format!("{} (round {})", self.kind.name(), round + 1),
            None => self.kind.name().to_string(),
        };
        eprintln!("[{who}] FAILED: {e}");
        self.table.errors.push(format!("{who}: {e}"));
    }

    fn set(&mut self, label: &str, unit: Unit, value: f64) {
        eprintln!("[{}] {label}: {value:.1} {unit:?}", self.kind.name());
        self.table.set(label, unit, self.kind, Cell::Value(value));
    }

    /// After a scenario: the intermediary still runs and recorded each
    /// session completely.
    fn check(&mut self, running: &mut Running, what: &str, sessions: usize) -> bool {
        let result = running
            .alive()
            .and_then(|()| running.settle_casts(sessions).map(|_| ()));
        match result {
            Ok(()) => true,
            Err(e) => {
                let tail = running.log_tail();
                self.fail(format!("{what}: {e}\n{tail}"));
                false
            }
        }
    }

    async fn single_sessions(
        &mut self,
        args: &RunArgs,
        protocols: &[Protocol],
        scenarios: &[&str],
    ) {
        let Some(mut running) = self.start() else {
            return;
        };
        for scenario in scenarios {
            match *scenario {
                "throughput" => self.throughput(args, protocols, &mut running).await,
                "latency" => self.latency(args, protocols, &mut running).await,
                _ => {}
            }
        }
    }

    async fn throughput(&mut self, args: &RunArgs, protocols: &[Protocol], running: &mut Running) {
        let addr = running.addr;
        let bytes = args.mib << 20;
        for &p in protocols {
            let label = format!("throughput {} ({} MiB)", p.name(), args.mib);
            let timeout = scenarios::scenario_timeout(bytes);
            match tokio::time::timeout(timeout, scenarios::throughput(addr, p, bytes)).await {
                Ok(Ok(mib_s)) if self.check(running, &label, 1) => {
                    self.set(&label, Unit::MibPerSec, mib_s)
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.fail(format!("{label}: {e}")),
                Err(_) => self.fail(format!("{label}: over {timeout:?}")),
            }
        }
    }

    async fn latency(&mut self, args: &RunArgs, protocols: &[Protocol], running: &mut Running) {
        let addr = running.addr;
        for &p in protocols {
            let label = format!("latency {} ({} keys)", p.name(), args.keys);
            let timeout = scenarios::scenario_timeout(0) * 4;
            match tokio::time::timeout(timeout, scenarios::latency(addr, p, args.keys)).await {
                Ok(Ok(pct)) if self.check(running, &label, 1) => {
                    self.set(&format!("{label} p50"), Unit::Micros, pct.p50);
                    self.set(&format!("{label} p99"), Unit::Micros, pct.p99);
                    self.set(&format!("{label} p99.9"), Unit::Micros, pct.p999);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.fail(format!("{label}: {e}")),
                Err(_) => self.fail(format!("{label}: over {timeout:?}")),
            }
        }
    }

    /// A fresh intermediary per session count, so memory freed by earlier
    /// scenarios does not hide what new sessions cost.
    async fn concurrency(&mut self, args: &RunArgs, protocols: &[Protocol], sessions: usize) {
        let Some(mut running) = self.start() else {
            return;
        };
        let label = format!("{sessions} sessions");
        let rss = || running.rss_kib();
        let result = scenarios::concurrency(
            running.addr,
            protocols,
            sessions,
            args.busy_percent,
            args.busy_mib << 20,
            &rss,
        )
        .await;
        let c = match result {
            Ok(c) => c,
            Err(e) => return self.fail(format!("{label}: {e}")),
        };
        if !self.check(&mut running, &label, sessions) {
            return;
        }
        self.set(
            &format!("{label}: failed sessions"),
            Unit::Count,
            c.failed as f64,
        );
        if c.failed > 0 {
            self.fail(format!(
                "{label}: {} sessions failed, e.g. {:?}",
                c.failed, c.first_errors
            ));
        }
        let busy = (sessions * args.busy_percent / 100).clamp(1, sessions);
        self.set(
            &format!("{label}: throughput of {busy} busy"),
            Unit::MibPerSec,
            c.mib_per_s,
        );
        for (what, value) in [
            ("RSS per idle session", c.idle_kib),
            ("peak RSS per session", c.peak_kib),
        ] {
            let row = format!("{label}: {what}");
            match value {
                Some(v) => self.set(&row, Unit::Kib, v),
                None => self
                    .table
                    .set(&row, Unit::Kib, self.kind, Cell::NotApplicable),
            }
        }
    }
}
