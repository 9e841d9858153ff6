//! `kubecast-test-upstream --listen ADDR`: the test upstream as a process,
//! for trying kubectl (or the proxy) against it by hand.

use std::net::SocketAddr;

use kubecast_tests::upstream::{TestUpstream, UpstreamConfig};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => match addr.parse() {
                Ok(addr) => listen = addr,
                Err(e) => fail(&format!("bad --listen address {addr:?}: {e}")),
            },
            _ => fail(&format!("unexpected argument {arg:?}")),
        }
    }
    let upstream = match TestUpstream::bind(listen, UpstreamConfig::default()).await {
        Ok(upstream) => upstream,
        Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
    };
    println!("kubecast test upstream listening on {}", upstream.url());
    println!("pods: default/demo (container main: sh, tty), default/worker (container main: cat)");
    println!(
        "try: kubectl --server {} exec demo -- echo hello",
        upstream.url()
    );
    let _ = tokio::signal::ctrl_c().await;
}

fn fail(message: &str) -> ! {
    eprintln!("kubecast-test-upstream: {message}\nusage: kubecast-test-upstream [--listen ADDR]");
    std::process::exit(2);
}
