//! Where a driven session's outputs go: the core's [`SessionSink`]
//! interface and items, and [`ChannelSink`] on an `async-channel`.

use bytes::Bytes;
pub use kubecast_core::drive::{SessionSink, SinkError, SinkItem, UploadEvent};
use kubecast_core::session::SessionEvent;
use std::future::Future;

/// A sink that sends every output into a bounded channel. The bound is the
/// back-pressure: when the receiver falls `capacity` items behind, the
/// session stops forwarding until it catches up. A dropped receiver is
/// [`SinkError::Closed`].
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: async_channel::Sender<SinkItem>,
}

impl ChannelSink {
    /// A sink and the receiver of its items; `capacity` is at least 1.
    pub fn new(capacity: usize) -> (ChannelSink, async_channel::Receiver<SinkItem>) {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        (ChannelSink { tx }, rx)
    }

    fn send(&self, item: SinkItem) -> impl Future<Output = Result<(), SinkError>> + Send {
        let tx = self.tx.clone();
        async move { tx.send(item).await.map_err(|_| SinkError::Closed) }
    }
}

impl SessionSink for ChannelSink {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Event(event))
    }

    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Cast(bytes))
    }

    fn capture(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Capture(bytes))
    }

    fn upload(&mut self, event: UploadEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Upload(event))
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Finished)
    }
}
