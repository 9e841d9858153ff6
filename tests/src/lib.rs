//! `kubecast-tests`: what the end-to-end tests stand on.
//!
//! - [`upstream`]: [`upstream::TestUpstream`], a faithful imitation of
//!   kube-apiserver's exec/attach endpoints (WebSocket and SPDY/3.1) with a
//!   scripted container.
//! - [`kubectl`]: runs the real `kubectl` against a server — piped, or
//!   under a pseudo-terminal driven by `tests/scripts/pty_run.py`.
//! - [`capture`]: a TCP relay that records upgraded exec/attach connections
//!   in the core's capture format.
//! - [`process`]: `kubecast` subcommands as child processes, their logs
//!   kept; [`scratch`]: throwaway directories.
//! - [`fixtures`]: the sessions captured in `tests/fixtures/` and how to
//!   record them again.
//! - [`scenarios`]: adapter scenarios written once and run on every
//!   runtime adapter (tokio, smol, async-std).

pub mod capture;
pub mod fixtures;
pub mod kubectl;
pub mod process;
pub mod scenarios;
pub mod scratch;
/// The simulated kube-apiserver lives in the `kubecast` crate (it also
/// serves `kubecast demo`); the tests know it by its old name.
pub use kubecast::sim as upstream;

/// Turns each `async fn name(transport: Transport)` scenario into two tokio
/// tests, `websocket::name` and `spdy::name`, so every end-to-end scenario
/// runs over both of kubectl's streaming protocols.
#[macro_export]
macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::kubectl::Transport::WebSocket).await
                }
            )*
        }
        mod spdy {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::kubectl::Transport::Spdy).await
                }
            )*
        }
    };
}
