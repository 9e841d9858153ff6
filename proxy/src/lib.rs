//! The `kubecast` binary's library half.
//!
//! Only what something outside the binary needs lives here:
//!
//! - [`sim`]: a simulated kube-apiserver with one scripted pod. `kubecast
//!   demo` puts the proxy in front of it so a newcomer without a cluster can
//!   watch a session being recorded; the end-to-end tests (`kubecast-tests`)
//!   use it as the upstream that real `kubectl` talks to.

pub mod sim;
