//! The `kubecast` command.
//!
//! Today it decodes captured exec/attach connections (`kubecast decode`);
//! the proxy, recorder and replay subcommands arrive with their issues.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod decode;

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
    /// Decode a captured exec/attach connection and print its events.
    Decode {
        /// A capture file (kubecast-capture/1), e.g. tests/fixtures/ws-v5-exec-tty.cap.
        capture: PathBuf,
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode { capture, json } => decode::run(&capture, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kubecast: {message}");
            ExitCode::FAILURE
        }
    }
}
