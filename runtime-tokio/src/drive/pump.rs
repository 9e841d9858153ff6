//! One direction's I/O on tokio streams: does what the core's [`Pump`]
//! asks and reports the result.

use kubecast_core::drive::{Pump, PumpIo, PumpStep};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Moves `pump` on until it has a step for the driver or must wait.
pub(super) fn poll_pump<R, W>(
    pump: &mut Pump,
    may_read: bool,
    cx: &mut Context<'_>,
    from: &mut R,
    to: &mut W,
) -> Poll<PumpStep>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let result = match pump.io(may_read) {
            PumpIo::Wait => return Poll::Pending,
            PumpIo::Read(buf) => {
                let mut read = ReadBuf::new(buf);
                ready!(Pin::new(&mut *from).poll_read(cx, &mut read)).map(|()| read.filled().len())
            }
            PumpIo::Write(bytes) => ready!(Pin::new(&mut *to).poll_write(cx, bytes)),
            PumpIo::Flush => ready!(Pin::new(&mut *to).poll_flush(cx)).map(|()| 0),
            PumpIo::Shutdown => ready!(Pin::new(&mut *to).poll_shutdown(cx)).map(|()| 0),
        };
        if let Some(step) = pump.done(Instant::now().into_std(), result) {
            return Poll::Ready(step);
        }
    }
}
