//! The shared recorder scenarios (see `upload_recorder.rs`) on
//! `kubecast-smol` with smol's executor.

mod recorder_support;
mod upload_support;

use kubecast_tests::scenarios::adapters::{Executor, Smol};
use std::future::Future;

struct OnSmol;

impl Executor for OnSmol {
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
}

recorder_scenarios!(Smol<OnSmol>);
