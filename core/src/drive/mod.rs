//! Driving a session, without the I/O: everything a runtime adapter
//! (`kubecast-tokio`, `kubecast-smol`) needs that is not about its runtime.
//!
//! An adapter owns two byte streams, a sleep and a sink. It runs one loop:
//!
//! ```text
//! let mut driver = Driver::new(&options, now);   driver.start(now, &mut machine);
//! loop {
//!     match driver.poll(now, &mut machine) {      // the clock is read before awaiting
//!         Next::Drain => { execute machine.poll_work(); deliver machine.poll_item() via driver.ledger() }
//!         Next::End(result) => break result,
//!         Next::Wait { wake, changed } => {
//!             re-arm the sleep if changed; then wait for the first of:
//!             pump i (driver.order()): do pump.io(may_read) with the stream traits, report pump.done(now, result)
//!                 → Some(step) => driver.on_pump(now, &mut machine, i, step)
//!             the machine's own I/O (the upload's network events) → feed it; driver.on_io()
//!             the sleep → (handled by the next poll)
//!             the stop signal (cut, or end with a message) → driver.on_stop(now, &mut machine, message)
//!         }
//!     }
//! }
//! drop both streams; driver.close_sides(now, &mut machine); drain; result = driver.verdict(&mut machine, result);
//! (a recording: run the upload to its end); sink.finish() through driver.ledger(); driver.end(now, result)
//! ```
//!
//! - [`Machine`]: the sans-IO machine being driven — [`SessionMachine`]
//!   (a plain [`crate::session::Session`]) or [`RecordingMachine`] (a
//!   [`crate::recording::Recording`]: upload work, facts, write gate,
//!   verdicts).
//! - [`Driver`] and [`Pump`]: the loop's decisions and each direction's
//!   copy state (read → held → write → flush; farewell; half-close).
//! - [`Ledger`]: the [`DriveSummary`] built from what reaches the sink, and
//!   the [`OnSinkError`] policy.
//! - [`SessionSink`], [`SinkItem`], [`UploadEvent`], [`SinkError`],
//!   [`DriveOptions`], [`DriveError`]: the public vocabulary both adapters
//!   re-export under the same names.
//! - [`UploadWork`], [`AttemptCommand`], [`Net`], [`SendQueue`]: what the
//!   adapter's upload transport executes and reports.
//! - [`file_name`]: how a file sink names its casts.
//! - `UploadTls` (feature `tls`): the rustls client configuration for
//!   `https://` recorders, shared by both adapters.

mod driver;
pub mod file_name;
mod machine;
mod options;
mod pump;
mod recording;
mod sink;
mod summary;
#[cfg(test)]
mod tests;
#[cfg(feature = "tls")]
mod tls;
mod upload_io;

pub use driver::{Driver, Next};
pub use machine::{Deadline, Machine, SessionMachine};
pub use options::{DriveOptions, OnSinkError, Preamble, DEFAULT_BUFFER_SIZE};
pub use pump::{Pump, PumpIo, PumpState, PumpStep, MIN_READ_BUFFER};
pub use recording::RecordingMachine;
pub use sink::{ItemSink, SessionSink, SinkError, SinkItem, UploadEvent};
pub use summary::{DriveError, DriveErrorKind, DriveSummary, Ledger, Receipt};
#[cfg(feature = "tls")]
pub use tls::UploadTls;
pub use upload_io::{AttemptCommand, Net, SendQueue, Sorted, UploadWork};
