//! The shared recorder scenarios on `kubecast-tokio`: a recorded session
//! arrives complete at the real `kubecast recorder` — over v2 (h2c), over
//! v1 behind an HTTP/1.1-only front, after failing over from a dead
//! address, over TLS with a private CA — byte-identical to a replay of the
//! same bytes; the ack window expires on a stopped recorder (fail-closed
//! ends the session, fail-open goes on); a recorder killed mid-upload
//! leaves an `_incomplete` cast. The same scenarios run on smol
//! (`runtime_smol.rs`) and async-std (`runtime_async_std.rs`).

mod recorder_support;
mod upload_support;

use kubecast_tests::scenarios::adapters::{OnTokio, Tokio};

recorder_scenarios!(Tokio<OnTokio>);
