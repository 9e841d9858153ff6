//! The cast's header line.

use serde::Serialize;
use std::collections::BTreeMap;

/// The asciicast v2 header, plus a `kubernetes` object saying who ran what
/// where. Players ignore keys they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CastHeader {
    /// Always 2.
    pub version: u8,
    /// Terminal columns (from the first resize of a tty session).
    pub width: u16,
    /// Terminal rows.
    pub height: u16,
    /// Unix seconds when the session started, supplied by the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The command line, arguments joined by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Environment, e.g. `TERM` when known.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub kubernetes: KubernetesInfo,
}

/// Who, where and how, for the header's `kubernetes` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KubernetesInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub namespace: String,
    pub pod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `exec` or `attach`.
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `spdy` or `websocket`.
    pub protocol: String,
    /// The negotiated version, e.g. `v5.channel.k8s.io`.
    pub protocol_version: String,
    pub tty: bool,
    pub stdin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl CastHeader {
    /// Appends the header line to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Serialising strings, integers and maps into a Vec cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}
