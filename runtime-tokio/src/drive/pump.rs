//! One direction's copy state: read, (the driver feeds the core), write
//! all, flush, read again — and, when the core ends the session, the last
//! words to the client.

use super::DriveErrorKind;
use bytes::Bytes;
use kubecast_core::Side;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PumpState {
    Reading,
    /// `n` bytes read, waiting for the driver to feed the core.
    Held,
    Writing {
        pos: usize,
        end: usize,
    },
    Flushing,
    /// End of file seen, waiting for the driver to tell the core.
    EofSeen,
    ShuttingDown,
    /// Writing the core's farewell ([`Pump::part`]), then flushing it.
    Parting {
        pos: usize,
    },
    PartingFlush,
    Done,
}

pub(super) enum PumpStep {
    Read(usize),
    Eof,
    /// The other side's write half is shut down, or the farewell is
    /// written: this direction is over.
    Closed,
    Failed(DriveErrorKind),
}

/// Copies one direction through a bounded buffer. It never reads while a
/// write is pending — that is the back-pressure.
pub(super) struct Pump {
    pub(super) from: Side,
    pub(super) buf: Box<[u8]>,
    pub(super) state: PumpState,
    /// Last read or write progress.
    pub(super) active_at: Instant,
    /// Bytes to write once the pending write is done, then stop.
    farewell: Option<Bytes>,
}

impl Pump {
    pub(super) fn new(from: Side, size: usize, now: Instant) -> Pump {
        Pump {
            from,
            buf: vec![0; size].into_boxed_slice(),
            state: PumpState::Reading,
            active_at: now,
            farewell: None,
        }
    }

    fn to(&self) -> Side {
        match self.from {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    /// The core ends the session: finish the write under way — of the read
    /// just fed (`held`), only its first `forward` bytes — then write
    /// `bytes` and stop. Returns `false` if this direction can no longer
    /// write (its far side is shut down or failed): nothing is written.
    pub(super) fn part(&mut self, held: Option<usize>, forward: usize, bytes: Bytes) -> bool {
        match self.state {
            PumpState::Held => {
                let end = held.unwrap_or(0).min(forward);
                self.state = PumpState::Writing { pos: 0, end };
            }
            PumpState::Reading => self.state = PumpState::Parting { pos: 0 },
            PumpState::Writing { .. } | PumpState::Flushing => {}
            _ => return false,
        }
        self.farewell = Some(bytes);
        true
    }

    /// Stops this direction where it is; nothing more is written.
    pub(super) fn stop(&mut self) {
        self.state = PumpState::Done;
    }

    fn write_failed(&mut self, source: io::Error) -> Poll<PumpStep> {
        self.state = PumpState::Done;
        Poll::Ready(PumpStep::Failed(DriveErrorKind::Write {
            side: self.to(),
            source,
        }))
    }

    /// Moves this direction on. `may_read`: the core's read budget for
    /// `from` is not 0 (otherwise a pump in `Reading` waits).
    pub(super) fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        may_read: bool,
    ) -> Poll<PumpStep>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.state {
                PumpState::Reading if !may_read => return Poll::Pending,
                PumpState::Reading => {
                    let mut read = ReadBuf::new(&mut self.buf);
                    match Pin::new(&mut *from).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) => {
                            let n = read.filled().len();
                            self.active_at = Instant::now();
                            return Poll::Ready(if n == 0 {
                                self.state = PumpState::EofSeen;
                                PumpStep::Eof
                            } else {
                                self.state = PumpState::Held;
                                PumpStep::Read(n)
                            });
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Poll::Ready(Err(source)) => {
                            self.state = PumpState::Done;
                            return Poll::Ready(PumpStep::Failed(DriveErrorKind::Read {
                                side: self.from,
                                source,
                            }));
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                PumpState::Writing { pos, end } if pos >= end => self.state = PumpState::Flushing,
                PumpState::Writing { pos, end } => {
                    let chunk = self.buf.get(pos..end).unwrap_or_default();
                    match Pin::new(&mut *to).poll_write(cx, chunk) {
                        Poll::Ready(Ok(0)) => {
                            return self.write_failed(io::ErrorKind::WriteZero.into())
                        }
                        Poll::Ready(Ok(n)) => {
                            self.active_at = Instant::now();
                            self.state = PumpState::Writing { pos: pos + n, end };
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Poll::Ready(Err(e)) => return self.write_failed(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                PumpState::Flushing => match Pin::new(&mut *to).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.state = match self.farewell {
                            Some(_) => PumpState::Parting { pos: 0 },
                            None => PumpState::Reading,
                        }
                    }
                    Poll::Ready(Err(e)) => return self.write_failed(e),
                    Poll::Pending => return Poll::Pending,
                },
                PumpState::Parting { pos } => {
                    let rest = self
                        .farewell
                        .as_ref()
                        .and_then(|b| b.get(pos..))
                        .unwrap_or_default();
                    if rest.is_empty() {
                        self.state = PumpState::PartingFlush;
                        continue;
                    }
                    match Pin::new(&mut *to).poll_write(cx, rest) {
                        Poll::Ready(Ok(0)) => {
                            return self.write_failed(io::ErrorKind::WriteZero.into())
                        }
                        Poll::Ready(Ok(n)) => {
                            self.active_at = Instant::now();
                            self.state = PumpState::Parting { pos: pos + n };
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Poll::Ready(Err(e)) => return self.write_failed(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                PumpState::PartingFlush => match Pin::new(&mut *to).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.state = PumpState::Done;
                        return Poll::Ready(PumpStep::Closed);
                    }
                    Poll::Ready(Err(e)) => return self.write_failed(e),
                    Poll::Pending => return Poll::Pending,
                },
                PumpState::ShuttingDown => match Pin::new(&mut *to).poll_shutdown(cx) {
                    // A peer that is already gone has nothing left to be told.
                    Poll::Ready(Ok(())) => {
                        self.state = PumpState::Done;
                        return Poll::Ready(PumpStep::Closed);
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                        self.state = PumpState::Done;
                        return Poll::Ready(PumpStep::Closed);
                    }
                    Poll::Ready(Err(e)) => return self.write_failed(e),
                    Poll::Pending => return Poll::Pending,
                },
                // Waiting for the driver, or finished: nothing to poll.
                PumpState::Held | PumpState::EofSeen | PumpState::Done => return Poll::Pending,
            }
        }
    }
}
