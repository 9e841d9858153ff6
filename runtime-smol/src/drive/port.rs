//! The sink side of the loop: [`SinkPort`] hands the machine's items to a
//! [`SessionSink`] (bounded by the sink timeout, an `async-io` timer,
//! through the core's [`Ledger`]), and [`Driven`] is what the loop drives
//! — a core [`Machine`] plus its own I/O (a recording's upload transport).

use async_io::Timer;
use futures_lite::future;
use kubecast_core::drive::{
    DriveErrorKind, Ledger, Machine, SessionMachine, SessionSink, SinkError, SinkItem, UploadWork,
};
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

/// A core machine and the I/O it brings along.
pub(crate) trait Driven {
    type M: Machine;
    fn machine(&mut self) -> &mut Self::M;
    /// Executes upload work (a plain session has none).
    fn execute(&mut self, work: UploadWork);
    /// Polls the machine's own I/O; `Ready` once it fed the machine an
    /// input (drain next).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// After both connections are closed: run what remains (the upload's
    /// end) until it has settled.
    async fn settle<S: SessionSink>(&mut self, port: &mut SinkPort<'_, S>);
}

/// A plain session: no I/O of its own.
impl Driven for SessionMachine<'_> {
    type M = Self;
    fn machine(&mut self) -> &mut Self {
        self
    }
    fn execute(&mut self, _work: UploadWork) {}
    fn poll_io(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    async fn settle<S: SessionSink>(&mut self, _port: &mut SinkPort<'_, S>) {}
}

/// The sink and the summary being built.
pub(crate) struct SinkPort<'a, S> {
    pub(crate) sink: &'a mut S,
    pub(crate) ledger: &'a mut Ledger,
}

impl<S: SessionSink> SinkPort<'_, S> {
    /// Executes the machine's work, then delivers its items. `Err` ends the
    /// session now.
    pub(crate) async fn drain<D: Driven>(&mut self, driven: &mut D) -> Result<(), DriveErrorKind> {
        while let Some(work) = driven.machine().poll_work() {
            driven.execute(work);
        }
        while let Some(item) = driven.machine().poll_item() {
            let Some((item, receipt)) = self.ledger.admit(item) else {
                continue;
            };
            let limit = self.ledger.sink_timeout();
            let result = match item {
                SinkItem::Event(e) => bounded(limit, self.sink.event(e)).await,
                SinkItem::Cast(b) => bounded(limit, self.sink.cast(b)).await,
                SinkItem::Capture(b) => bounded(limit, self.sink.capture(b)).await,
                SinkItem::Upload(e) => bounded(limit, self.sink.upload(e)).await,
                SinkItem::Finished => Ok(()),
            };
            self.ledger.delivered(receipt, result)?;
        }
        Ok(())
    }

    /// The sink's `finish`, with the same deadline.
    pub(crate) async fn finish(&mut self, result: &mut Result<(), DriveErrorKind>) {
        let finished = bounded(self.ledger.sink_timeout(), self.sink.finish()).await;
        self.ledger.finished(result, finished);
    }
}

/// A sink call with the sink deadline.
async fn bounded<F>(limit: Option<Duration>, call: F) -> Result<(), SinkError>
where
    F: Future<Output = Result<(), SinkError>>,
{
    match limit {
        Some(limit) => {
            let expired = async {
                Timer::after(limit).await;
                Err(SinkError::TimedOut(limit))
            };
            future::or(call, expired).await
        }
        None => call.await,
    }
}
