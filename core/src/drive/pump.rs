//! One direction's copy state, without the I/O: read, (the driver feeds
//! the core), write all, flush, read again — and, when the core ends the
//! session, the last words to the client.
//!
//! The adapter asks [`Pump::io`] what to do, does it with its runtime's
//! stream traits, and reports the result with [`Pump::done`]; a
//! [`PumpStep`] is what the driver must hear about.

use super::summary::DriveErrorKind;
use crate::Side;
use bytes::Bytes;
use std::io;
use std::time::Instant;

/// Where a direction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpState {
    Reading,
    /// Bytes read, waiting for the driver to feed the core.
    Held,
    Writing {
        pos: usize,
        end: usize,
    },
    Flushing,
    /// End of file seen, waiting for the driver to tell the core.
    EofSeen,
    ShuttingDown,
    /// Writing the core's farewell (after the driver parted the pump), then flushing it.
    Parting {
        pos: usize,
    },
    PartingFlush,
    Done,
}

/// What the driver must hear about.
#[derive(Debug)]
pub enum PumpStep {
    Read(usize),
    Eof,
    /// The other side's write half is shut down, or the farewell is
    /// written: this direction is over.
    Closed,
    Failed(DriveErrorKind),
}

/// The operation a pump wants from its adapter now.
#[derive(Debug)]
pub enum PumpIo<'a> {
    /// Read from the source into this buffer (report the count, 0 = EOF).
    Read(&'a mut [u8]),
    /// Write (part of) these bytes to the destination (report the count).
    Write(&'a [u8]),
    /// Flush the destination (report `Ok(0)`).
    Flush,
    /// Shut down the destination's write half (report `Ok(0)`).
    Shutdown,
    /// Nothing to do until the driver moves this pump on.
    Wait,
}

/// The read buffer a direction starts with and shrinks back to: an idle
/// session (most of them, most of the time) holds two of these, not two
/// of the largest.
pub const MIN_READ_BUFFER: usize = 1024;

/// Copies one direction through a bounded buffer. It never reads while a
/// write is pending — that is the back-pressure.
///
/// The buffer adapts between [`MIN_READ_BUFFER`] and the largest size the
/// options allow: a read that fills it makes the next read four times
/// larger (a bulk stream reaches the largest size within two reads); a read
/// of less than a sixteenth of it makes the next one the smallest again (a
/// keystroke, or the first output after a pause). It is resized only
/// between a flush and the next read, when it holds nothing.
#[derive(Debug)]
pub struct Pump {
    from: Side,
    buf: Box<[u8]>,
    /// The size for the next read; applied when the buffer is empty.
    next_size: usize,
    /// The largest buffer allowed (`DriveOptions::buffer_size`).
    max_size: usize,
    state: PumpState,
    /// Last read or write progress.
    active_at: Instant,
    /// Bytes to write once the pending write is done, then stop.
    farewell: Option<Bytes>,
}

impl Pump {
    /// A pump whose reads are at most `max_size` bytes.
    pub fn new(from: Side, max_size: usize, now: Instant) -> Pump {
        let max_size = max_size.max(1);
        let start = MIN_READ_BUFFER.min(max_size);
        Pump {
            from,
            buf: vec![0; start].into_boxed_slice(),
            next_size: start,
            max_size,
            state: PumpState::Reading,
            active_at: now,
            farewell: None,
        }
    }

    /// The side this pump reads from.
    pub fn from(&self) -> Side {
        self.from
    }

    pub fn state(&self) -> PumpState {
        self.state
    }

    /// The last read or write progress.
    pub fn active_at(&self) -> Instant {
        self.active_at
    }

    /// The first `n` bytes of the buffer (the read just made).
    pub(super) fn read_bytes(&self, n: usize) -> &[u8] {
        self.buf.get(..n).unwrap_or_default()
    }

    pub(super) fn set_state(&mut self, state: PumpState) {
        self.state = state;
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

    /// What to do next. `may_read`: the machine lets this side be read now
    /// (otherwise a pump in `Reading` waits).
    pub fn io(&mut self, may_read: bool) -> PumpIo<'_> {
        loop {
            match self.state {
                PumpState::Reading if !may_read => return PumpIo::Wait,
                PumpState::Reading => {
                    if self.buf.len() != self.next_size {
                        // Empty between a flush and a read: nothing to keep.
                        self.buf = vec![0; self.next_size].into_boxed_slice();
                    }
                    return PumpIo::Read(&mut self.buf);
                }
                PumpState::Writing { pos, end } if pos >= end => self.state = PumpState::Flushing,
                PumpState::Writing { pos, end } => {
                    return PumpIo::Write(self.buf.get(pos..end).unwrap_or_default())
                }
                PumpState::Flushing | PumpState::PartingFlush => return PumpIo::Flush,
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
                    return PumpIo::Write(rest);
                }
                PumpState::ShuttingDown => return PumpIo::Shutdown,
                // Waiting for the driver, or finished.
                PumpState::Held | PumpState::EofSeen | PumpState::Done => return PumpIo::Wait,
            }
        }
    }

    /// The result of the operation [`Pump::io`] asked for. `Some(step)`:
    /// hand it to the driver; `None`: ask [`Pump::io`] again.
    pub fn done(&mut self, now: Instant, result: io::Result<usize>) -> Option<PumpStep> {
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::Interrupted {
                return None;
            }
        }
        match (self.state, result) {
            (PumpState::Reading, Ok(0)) => {
                self.active_at = now;
                self.state = PumpState::EofSeen;
                Some(PumpStep::Eof)
            }
            (PumpState::Reading, Ok(n)) => {
                self.active_at = now;
                self.state = PumpState::Held;
                let len = self.buf.len();
                self.next_size = if n >= len {
                    len.saturating_mul(4).min(self.max_size)
                } else if n < len / 16 {
                    MIN_READ_BUFFER.min(self.max_size)
                } else {
                    len
                };
                Some(PumpStep::Read(n.min(len)))
            }
            (PumpState::Reading, Err(source)) => {
                self.state = PumpState::Done;
                Some(PumpStep::Failed(DriveErrorKind::Read {
                    side: self.from,
                    source,
                }))
            }
            (PumpState::Writing { .. } | PumpState::Parting { .. }, Ok(0)) => {
                self.write_failed(io::ErrorKind::WriteZero.into())
            }
            (PumpState::Writing { pos, end }, Ok(n)) => {
                self.active_at = now;
                self.state = PumpState::Writing {
                    pos: pos.saturating_add(n).min(end),
                    end,
                };
                None
            }
            (PumpState::Parting { pos }, Ok(n)) => {
                self.active_at = now;
                self.state = PumpState::Parting {
                    pos: pos.saturating_add(n),
                };
                None
            }
            (PumpState::Flushing, Ok(_)) => {
                self.state = match self.farewell {
                    Some(_) => PumpState::Parting { pos: 0 },
                    None => PumpState::Reading,
                };
                None
            }
            (PumpState::PartingFlush | PumpState::ShuttingDown, Ok(_)) => {
                self.state = PumpState::Done;
                Some(PumpStep::Closed)
            }
            // A peer that is already gone has nothing left to be told.
            (PumpState::ShuttingDown, Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                self.state = PumpState::Done;
                Some(PumpStep::Closed)
            }
            (_, Err(e)) => self.write_failed(e),
            // Nothing was asked in these states.
            (PumpState::Held | PumpState::EofSeen | PumpState::Done, Ok(_)) => None,
        }
    }

    fn write_failed(&mut self, source: io::Error) -> Option<PumpStep> {
        self.state = PumpState::Done;
        Some(PumpStep::Failed(DriveErrorKind::Write {
            side: self.to(),
            source,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests may read the clock; the core may not.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_read_is_held_then_written_in_parts_then_flushed() {
        let now = start();
        let mut pump = Pump::new(Side::Client, 8, now);
        let PumpIo::Read(buf) = pump.io(true) else {
            panic!("reads first")
        };
        buf[..3].copy_from_slice(b"abc");
        assert!(matches!(pump.done(now, Ok(3)), Some(PumpStep::Read(3))));
        assert!(matches!(pump.io(true), PumpIo::Wait), "held for the driver");
        pump.set_state(PumpState::Writing { pos: 0, end: 3 });
        assert!(matches!(pump.io(true), PumpIo::Write(b"abc")));
        assert!(pump.done(now, Ok(1)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Write(b"bc")));
        assert!(pump.done(now, Ok(2)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Flush));
        assert!(pump.done(now, Ok(0)).is_none());
        assert!(matches!(pump.io(false), PumpIo::Wait), "the read gate");
        assert!(matches!(pump.io(true), PumpIo::Read(_)));
    }

    #[test]
    fn a_farewell_follows_the_write_under_way_and_ends_the_direction() {
        let now = start();
        let mut pump = Pump::new(Side::Upstream, 8, now);
        let PumpIo::Read(_) = pump.io(true) else {
            panic!()
        };
        assert!(matches!(pump.done(now, Ok(6)), Some(PumpStep::Read(6))));
        assert!(pump.part(Some(6), 4, Bytes::from_static(b"bye")));
        assert!(matches!(pump.io(true), PumpIo::Write(w) if w.len() == 4));
        assert!(pump.done(now, Ok(4)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Flush));
        assert!(pump.done(now, Ok(0)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Write(b"bye")));
        assert!(pump.done(now, Ok(3)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Flush));
        assert!(matches!(pump.done(now, Ok(0)), Some(PumpStep::Closed)));
        assert_eq!(pump.state(), PumpState::Done);
    }

    #[test]
    fn errors_are_typed_by_direction_and_interrupts_retry() {
        let now = start();
        let mut pump = Pump::new(Side::Client, 8, now);
        let _ = pump.io(true);
        assert!(pump
            .done(now, Err(io::ErrorKind::Interrupted.into()))
            .is_none());
        let Some(PumpStep::Failed(DriveErrorKind::Read { side, .. })) =
            pump.done(now, Err(io::ErrorKind::ConnectionReset.into()))
        else {
            panic!("a read error")
        };
        assert_eq!(side, Side::Client);
        let mut pump = Pump::new(Side::Client, 8, now);
        pump.set_state(PumpState::Writing { pos: 0, end: 2 });
        let Some(PumpStep::Failed(DriveErrorKind::Write { side, .. })) = pump.done(now, Ok(0))
        else {
            panic!("a zero write fails")
        };
        assert_eq!(side, Side::Upstream);
        pump.set_state(PumpState::ShuttingDown);
        assert!(matches!(
            pump.done(now, Err(io::ErrorKind::NotConnected.into())),
            Some(PumpStep::Closed)
        ));
    }

    /// Reads one `n`-byte result through a whole cycle (read, write,
    /// flush) and returns the size the next read is offered.
    fn cycle(pump: &mut Pump, now: Instant, n: usize) -> usize {
        let PumpIo::Read(buf) = pump.io(true) else {
            panic!("a pump in Reading asks for a read")
        };
        assert!(n <= buf.len());
        assert!(matches!(pump.done(now, Ok(n)), Some(PumpStep::Read(m)) if m == n));
        pump.set_state(PumpState::Writing { pos: 0, end: n });
        let _ = pump.io(true);
        assert!(pump.done(now, Ok(n)).is_none());
        assert!(matches!(pump.io(true), PumpIo::Flush));
        assert!(pump.done(now, Ok(0)).is_none());
        match pump.io(true) {
            PumpIo::Read(buf) => buf.len(),
            other => panic!("expected a read, got {other:?}"),
        }
    }

    #[test]
    fn the_read_buffer_starts_small_grows_with_full_reads_and_shrinks_after_small_ones() {
        let now = start();
        let mut pump = Pump::new(Side::Upstream, 64 * 1024, now);
        assert!(matches!(pump.io(true), PumpIo::Read(b) if b.len() == MIN_READ_BUFFER));
        // A bulk stream: every read fills the buffer.
        assert_eq!(cycle(&mut pump, now, 1024), 4 * 1024);
        assert_eq!(cycle(&mut pump, now, 4 * 1024), 16 * 1024);
        assert_eq!(cycle(&mut pump, now, 16 * 1024), 64 * 1024);
        assert_eq!(
            cycle(&mut pump, now, 64 * 1024),
            64 * 1024,
            "never past the maximum"
        );
        // Medium reads keep the size; a keystroke brings it back down.
        assert_eq!(cycle(&mut pump, now, 10_000), 64 * 1024);
        assert_eq!(cycle(&mut pump, now, 1), MIN_READ_BUFFER);
        // A maximum below the minimum is the only size.
        let mut small = Pump::new(Side::Client, 7, now);
        assert_eq!(cycle(&mut small, now, 7), 7);
        assert_eq!(cycle(&mut small, now, 1), 7);
    }
}
