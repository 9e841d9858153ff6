//! The sink side of the loop: [`SinkPort`] hands the machine's items to a
//! [`SessionSink`] (each call bounded by the sink timeout, through the
//! core's [`Ledger`]), and [`Driven`] is what the loop drives — a core
//! [`Machine`] plus its own I/O (a recording's upload transport).

use crate::Clock;
use kubecast_core::drive::{
    DriveErrorKind, Ledger, Machine, SessionMachine, SessionSink, SinkError, SinkItem, UploadWork,
};
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A core machine and the I/O it brings along, on clock `K`.
pub trait Driven<K: Clock> {
    type M: Machine;
    fn machine(&mut self) -> &mut Self::M;
    /// Executes upload work (a plain session has none).
    fn execute(&mut self, work: UploadWork);
    /// Polls the machine's own I/O; `Ready` once it fed the machine an
    /// input (drain next).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// After both connections are closed: run what remains (the upload's
    /// end) until it has settled.
    // The adapters' futures are `Send` when their types are; callers that
    // need it name concrete types, so the bound is not spelled here.
    #[allow(async_fn_in_trait)]
    async fn settle<S: SessionSink>(&mut self, port: &mut SinkPort<'_, S, K>);
}

/// A plain session: no I/O of its own.
impl<K: Clock> Driven<K> for SessionMachine<'_> {
    type M = Self;
    fn machine(&mut self) -> &mut Self {
        self
    }
    fn execute(&mut self, _work: UploadWork) {}
    fn poll_io(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    async fn settle<S: SessionSink>(&mut self, _port: &mut SinkPort<'_, S, K>) {}
}

/// The sink and the summary being built.
#[derive(Debug)]
pub struct SinkPort<'a, S, K> {
    sink: &'a mut S,
    ledger: &'a mut Ledger,
    clock: PhantomData<K>,
}

impl<'a, S: SessionSink, K: Clock> SinkPort<'a, S, K> {
    pub fn new(sink: &'a mut S, ledger: &'a mut Ledger) -> Self {
        SinkPort {
            sink,
            ledger,
            clock: PhantomData,
        }
    }

    /// Executes the machine's work, then delivers its items. `Err` ends the
    /// session now.
    pub async fn drain<D: Driven<K>>(&mut self, driven: &mut D) -> Result<(), DriveErrorKind> {
        while let Some(work) = driven.machine().poll_work() {
            driven.execute(work);
        }
        while let Some(item) = driven.machine().poll_item() {
            self.deliver(item).await?;
        }
        Ok(())
    }

    async fn deliver(&mut self, item: SinkItem) -> Result<(), DriveErrorKind> {
        let Some((item, receipt)) = self.ledger.admit(item) else {
            return Ok(());
        };
        let limit = self.ledger.sink_timeout();
        let result = match item {
            SinkItem::Event(e) => bounded::<K, _>(limit, self.sink.event(e)).await,
            SinkItem::Cast(b) => bounded::<K, _>(limit, self.sink.cast(b)).await,
            SinkItem::Capture(b) => bounded::<K, _>(limit, self.sink.capture(b)).await,
            SinkItem::Upload(e) => bounded::<K, _>(limit, self.sink.upload(e)).await,
            SinkItem::Finished => Ok(()),
        };
        self.ledger.delivered(receipt, result)
    }

    /// The sink's `finish`, with the same deadline.
    pub async fn finish(&mut self, result: &mut Result<(), DriveErrorKind>) {
        let finished = bounded::<K, _>(self.ledger.sink_timeout(), self.sink.finish()).await;
        self.ledger.finished(result, finished);
    }
}

/// A sink call with the sink deadline (`None`: no deadline).
async fn bounded<K, F>(limit: Option<Duration>, call: F) -> Result<(), SinkError>
where
    K: Clock,
    F: Future<Output = Result<(), SinkError>>,
{
    let Some((limit, at)) = limit.and_then(|l| Some((l, K::now().checked_add(l)?))) else {
        return call.await;
    };
    let mut call = pin!(call);
    let mut expired = pin!(K::sleep_until(at));
    poll_fn(|cx| {
        if let Poll::Ready(result) = call.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        expired
            .as_mut()
            .poll(cx)
            .map(|_| Err(SinkError::TimedOut(limit)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{pending, ready};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Instant;

    /// A clock whose sleeps are over at once: every deadline has passed.
    struct Expired;

    impl Clock for Expired {
        type Sleep = std::future::Ready<()>;
        #[allow(clippy::disallowed_methods)]
        fn now() -> Instant {
            Instant::now()
        }
        fn sleep_until(_at: Instant) -> Self::Sleep {
            ready(())
        }
    }

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Polls `future` once: these futures are ready or never.
    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Noop));
        pin!(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_sink_call_that_outlives_the_sink_timeout_is_timed_out() {
        let limit = Duration::from_secs(3);
        let call = pending::<Result<(), SinkError>>();
        let Poll::Ready(Err(SinkError::TimedOut(d))) =
            poll_once(bounded::<Expired, _>(Some(limit), call))
        else {
            panic!("timed out")
        };
        assert_eq!(d, limit);
    }

    #[test]
    fn a_ready_sink_call_wins_over_an_expired_deadline() {
        let call = ready(Err(SinkError::Closed));
        let result = poll_once(bounded::<Expired, _>(Some(Duration::ZERO), call));
        assert!(matches!(result, Poll::Ready(Err(SinkError::Closed))));
    }

    #[test]
    fn without_a_sink_timeout_a_call_may_wait_forever() {
        let call = pending::<Result<(), SinkError>>();
        assert!(poll_once(bounded::<Expired, _>(None, call)).is_pending());
    }
}
