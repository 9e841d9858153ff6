//! The `kubecast` command.
//!
//! `kubecast demo` shows the proxy recording sessions with no cluster;
//! `kubecast proxy` stands in front of kube-apiserver (authentication,
//! impersonation, exec/attach/port-forward upgrades); `kubecast recorder`
//! receives recordings; `kubecast replay` turns captured exec/attach
//! connections into casts and `kubecast decode` shows what the decoders see
//! in them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod decode;
mod demo;
mod net;
mod proxy;
mod recorder;
mod replay;

#[derive(Debug, Parser)]
#[command(
    name = "kubecast",
    version,
    about = "Records kubectl exec/attach sessions as asciinema casts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn a captured exec/attach connection into an asciicast v2 recording.
    Replay {
        /// A capture file (kubecast-capture/1), e.g. tests/fixtures/ws-v5-exec-tty.cap.
        capture: PathBuf,
        /// Write the cast here instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Record stdin as "i" events (off by default: input can hold secrets).
        #[arg(long)]
        record_stdin: bool,
        /// The cluster name written into the cast header.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Decode a captured exec/attach connection and print its events.
    Decode {
        /// A capture file (kubecast-capture/1), e.g. tests/fixtures/ws-v5-exec-tty.cap.
        capture: PathBuf,
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Proxy the Kubernetes API: authenticate callers, impersonate them
    /// upstream, relay exec/attach/port-forward sessions.
    Proxy(Box<proxy::Args>),
    /// Try kubecast without a cluster: a simulated API server with a pod,
    /// kubecast proxy in front of it recording to ./recordings, and the
    /// kubectl line to try.
    Demo(demo::Args),
    /// Receive recordings (upload protocols v1 and v2) and store them as .cast files.
    Recorder(recorder::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            capture,
            output,
            record_stdin,
            cluster,
        } => {
            let config = kubecast_core::session::SessionConfig {
                record_stdin,
                cluster,
                ..Default::default()
            };
            replay::run(&capture, output.as_deref(), config)
        }
        Command::Decode { capture, json } => decode::run(&capture, json),
        Command::Recorder(args) => recorder::run(args),
        Command::Proxy(args) => proxy::run(*args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kubecast: {message}");
            ExitCode::FAILURE
        }
    }
}
