//! Audit events for every proxied request, delivered to a webhook the way
//! kube-apiserver's audit webhook backend does — minus its silent drops.
//!
//! - [`event`]: `audit.k8s.io/v1` `Event` / `EventList` serde types with
//!   Kubernetes' JSON field names, and [`MicroTime`] (RFC 3339, µs, UTC).
//! - [`policy`]: the audit `Policy` subset (rules matched in order on
//!   users, groups, verbs, resources, namespaces, non-resource URLs; level
//!   and omitted stages).
//! - [`AuditBatcher`]: the sans-IO delivery machine — batch and blocking
//!   modes, throttle, retries with backoff, spill to disk, replay, drain.
//! - [`spill`]: the on-disk queue's record framing and its reader.
//!
//! The adapter sends the HTTP requests and does the file I/O; operator
//! documentation is in `docs/audit.md`.

mod batcher;
mod config;
mod delivery;
mod disk;
pub mod event;
mod output;
pub mod policy;
pub mod spill;
#[cfg(test)]
mod tests;
mod throttle;

pub use batcher::AuditBatcher;
pub use config::{AuditConfig, ConfigError, Mode, Overflow};
pub use event::{
    Event, EventList, Level, MicroTime, ObjectReference, ResponseStatus, Stage, UserInfo,
};
pub use output::{
    AuditOutput, AuditStats, BatchId, DeliveryError, DrainReport, PushOutcome, Refusal, Timer,
};
pub use policy::{Attributes, Decision, Policy, PolicyError, PolicyRule, ResourceAttributes};
pub use spill::SpillError;
