//! One direction's I/O: does what the core's [`Pump`] asks on a
//! [`ByteStream`] and reports the result.

use crate::{ByteStream, Clock};
use kubecast_core::drive::{Pump, PumpIo, PumpStep};
use std::task::{ready, Context, Poll};

/// Moves `pump` on until it has a step for the driver or must wait.
pub(crate) fn poll_pump<K: Clock>(
    pump: &mut Pump,
    may_read: bool,
    cx: &mut Context<'_>,
    from: &mut impl ByteStream,
    to: &mut impl ByteStream,
) -> Poll<PumpStep> {
    loop {
        let result = match pump.io(may_read) {
            PumpIo::Wait => return Poll::Pending,
            PumpIo::Read(buf) => ready!(from.poll_read(cx, buf)),
            PumpIo::Write(bytes) => ready!(to.poll_write(cx, bytes)),
            PumpIo::Flush => ready!(to.poll_flush(cx)).map(|()| 0),
            PumpIo::Shutdown => ready!(to.poll_shutdown(cx)).map(|()| 0),
        };
        if let Some(step) = pump.done(K::now(), result) {
            return Poll::Ready(step);
        }
    }
}
