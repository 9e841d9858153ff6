//! Where a driven session's outputs go: the core's [`SessionSink`]
//! interface and items, and [`ChannelSink`] on a tokio channel.

use kubecast_core::drive::ItemSink;
pub use kubecast_core::drive::{SessionSink, SinkError, SinkItem, UploadEvent};
use std::future::Future;
use tokio::sync::mpsc;

/// A sink that sends every output into a bounded channel. The bound is the
/// back-pressure: when the receiver falls `capacity` items behind, the
/// session stops forwarding until it catches up. A dropped receiver is
/// [`SinkError::Closed`].
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<SinkItem>,
}

impl ChannelSink {
    /// A sink and the receiver of its items; `capacity` is at least 1.
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<SinkItem>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelSink { tx }, rx)
    }
}

/// Every output is one item on the channel ([`ItemSink`] gives the
/// [`SessionSink`] methods).
impl ItemSink for ChannelSink {
    fn send(&mut self, item: SinkItem) -> impl Future<Output = Result<(), SinkError>> + Send {
        let tx = self.tx.clone();
        async move { tx.send(item).await.map_err(|_| SinkError::Closed) }
    }
}
