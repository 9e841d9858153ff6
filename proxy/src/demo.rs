//! `kubecast demo`: the product working end to end without a cluster.
//!
//! One process runs the simulated kube-apiserver ([`kubecast::sim`], pods
//! `demo` and `worker` in namespace `default` with a scripted shell) and
//! `kubecast proxy` in front of it, recording every exec/attach session to
//! `--recordings-dir`. It prints the `kubectl` line to try and where the
//! recordings go, then serves until Ctrl-C (or SIGTERM).
//!
//! The proxy is the real one, configured exactly as `kubecast proxy
//! --upstream URL --auth noauth --recordings-dir DIR` would be: the demo
//! builds its arguments from the same parser, so it cannot drift from what
//! users run.

use crate::proxy;
use clap::Parser;
use kubecast::sim::{TestUpstream, UpstreamConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Arguments of `kubecast demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the proxy listens (plain HTTP, loopback by default). Port 0
    /// picks a free port.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Where recordings go.
    #[arg(long, default_value = "./recordings")]
    pub recordings_dir: PathBuf,
}

/// The proxy's own argument parser, so the demo configures the proxy with
/// the very flags a user would type.
#[derive(Debug, Parser)]
struct ProxyCommandLine {
    #[command(flatten)]
    args: proxy::Args,
}

/// Runs the demo until SIGINT or SIGTERM.
pub fn run(args: Args) -> Result<(), String> {
    proxy::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.recordings_dir)
        .map_err(|e| format!("--recordings-dir {}: {e}", args.recordings_dir.display()))?;
    let upstream = TestUpstream::bind(([127, 0, 0, 1], 0).into(), UpstreamConfig::default())
        .await
        .map_err(|e| format!("cannot start the simulated API server: {e}"))?;
    let proxy_args = ProxyCommandLine::try_parse_from([
        "kubecast-proxy".to_string(),
        format!("--listen={}", args.listen),
        format!("--upstream={}", upstream.url()),
        "--auth=noauth".to_string(),
        format!("--recordings-dir={}", args.recordings_dir.display()),
        // Nothing long-running to wait for in a demo.
        "--shutdown-grace=2s".to_string(),
    ])
    .map_err(|e| format!("demo proxy arguments: {e}"))?
    .args;
    let recordings = args.recordings_dir.clone();
    let upstream_url = upstream.url();
    let served = proxy::serve_then(proxy_args, move |addr| {
        println!("{}", banner(addr, &upstream_url, &recordings));
    })
    .await;
    drop(upstream);
    served
}

/// What the demo prints once the proxy listens: how to try it.
fn banner(proxy: SocketAddr, upstream: &str, recordings: &Path) -> String {
    // An empty kubeconfig keeps the user's own clusters and credentials out
    // of it; --server names the proxy.
    let kubectl = format!("kubectl --kubeconfig=/dev/null --server=http://{proxy}");
    format!(
        "kubecast demo: a simulated API server ({upstream}) with pods `demo` (tty shell) and \
         `worker`, behind kubecast proxy on http://{proxy}.\n\
         \n\
         Try (the shell knows echo, seq, size, stderr, exit, cat; Ctrl-D leaves):\n\
         \n    {kubectl} exec -it demo -- sh\n\
         \n    {kubectl} exec demo -- echo hello from the pod\n\
         \n    {kubectl} run scratch --rm -it --image=busybox --restart=Never -- sh\n\
         \n\
         Each session is recorded to {dir}/ as an asciicast; play one with\n\
         \n    asciinema play {dir}/<file>.cast\n\
         \n\
         Ctrl-C stops the demo.",
        dir = recordings.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_the_proxy_and_the_recordings() {
        let text = banner(
            "127.0.0.1:8001".parse().unwrap(),
            "http://127.0.0.1:4242",
            Path::new("./recordings"),
        );
        assert!(text.contains(
            "kubectl --kubeconfig=/dev/null --server=http://127.0.0.1:8001 exec -it demo -- sh"
        ));
        assert!(text.contains("./recordings/"));
    }
}
