//! [`run`]: the one loop every driven machine shares, on any runtime. The
//! decisions are the core's [`Driver`]; this reads and writes, sleeps and
//! awaits the sink.

use crate::port::{Driven, SinkPort};
use crate::pump::poll_pump;
use crate::{ByteStream, Clock};
use kubecast_core::drive::{
    DriveError, DriveOptions, DriveSummary, Driver, Next, PumpStep, SessionSink,
};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

/// Drives `driven` between `client` and `upstream` into `sink` until the
/// core's [`Driver`] says the session is over, then closes both streams,
/// lets the machine settle (a recording's upload runs to its end) and
/// calls the sink's `finish`. `stop` completing ends the session: `None`
/// cuts it, `Some(message)` has the core end it with that message
/// ([`Driver::on_stop`]). The rules are the core's; see
/// `kubecast_core::drive`.
pub async fn run<K, D, C, U, S, F>(
    driven: &mut D,
    mut client: C,
    mut upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    K: Clock,
    D: Driven<K>,
    C: ByteStream,
    U: ByteStream,
    S: SessionSink,
    F: Future<Output = Option<String>>,
{
    // `None` once it completed: a finished future is not polled again.
    let mut stop = Some(Box::pin(stop));
    let mut driver = Driver::new(options, K::now());
    driver.start(K::now(), driven.machine());
    // The armed sleep; `None` when there is no deadline or it fired (it is
    // armed again at the next wait: runtimes differ on whether a finished
    // sleep fires again).
    let mut sleep: Option<Pin<Box<K::Sleep>>> = None;
    let mut result = loop {
        match driver.poll(K::now(), driven.machine()) {
            Next::End(result) => break result,
            Next::Drain => {
                let mut port = SinkPort::<S, K>::new(&mut *sink, driver.ledger());
                if let Err(e) = port.drain(driven).await {
                    break Err(e);
                }
            }
            Next::Wait { wake, changed } => {
                if changed || sleep.is_none() {
                    sleep = wake.map(|at| Box::pin(K::sleep_until(at)));
                }
                let woke = poll_fn(|cx| {
                    for i in driver.order() {
                        let (pump, may_read) = driver.pump(i);
                        let polled = match i {
                            0 => poll_pump::<K>(pump, may_read, cx, &mut client, &mut upstream),
                            _ => poll_pump::<K>(pump, may_read, cx, &mut upstream, &mut client),
                        };
                        if let Poll::Ready(step) = polled {
                            return Poll::Ready(Wake::Pump(i, step));
                        }
                    }
                    if driven.poll_io(cx).is_ready() {
                        return Poll::Ready(Wake::Io);
                    }
                    if let Some(Poll::Ready(_)) = sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                        return Poll::Ready(Wake::Deadline);
                    }
                    if let Some(Poll::Ready(message)) = stop.as_mut().map(|s| s.as_mut().poll(cx)) {
                        return Poll::Ready(Wake::Stop(message));
                    }
                    Poll::Pending
                })
                .await;
                match woke {
                    Wake::Pump(i, step) => driver.on_pump(K::now(), driven.machine(), i, step),
                    Wake::Io => driver.on_io(),
                    Wake::Deadline => sleep = None, // fired by the next poll
                    Wake::Stop(message) => {
                        stop = None;
                        driver.on_stop(K::now(), driven.machine(), message.as_deref());
                    }
                }
            }
        }
    };
    // Both connections end here, before the upload settles: kubectl does
    // not wait for the recorder's last ack.
    drop(client);
    drop(upstream);
    driver.close_sides(K::now(), driven.machine());
    let mut port = SinkPort::<S, K>::new(sink, driver.ledger());
    if let Err(e) = port.drain(driven).await {
        result = result.and(Err(e));
    }
    result = driver.verdict(driven.machine(), result);
    let mut port = SinkPort::<S, K>::new(sink, driver.ledger());
    driven.settle(&mut port).await;
    port.finish(&mut result).await;
    driver.end(K::now(), result)
}

/// What woke the loop.
enum Wake {
    Pump(usize, PumpStep),
    Io,
    Deadline,
    /// The stop future completed: `None` cut, `Some` end with a message.
    Stop(Option<String>),
}
