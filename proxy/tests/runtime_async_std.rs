//! The shared recorder scenarios (see `upload_recorder.rs`) on
//! `kubecast-smol`, unchanged, with async-std's executor: a compatibility
//! check (async-std is discontinued upstream; a dev-dependency only).

mod recorder_support;
mod upload_support;

use kubecast_tests::scenarios::adapters::{Executor, Smol};
use std::future::Future;

struct OnAsyncStd;

impl Executor for OnAsyncStd {
    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

recorder_scenarios!(Smol<OnAsyncStd>);
