//! `audit.k8s.io/v1` `Event` and `EventList`, with exactly the JSON field
//! names kube-apiserver uses, so any receiver of kube-apiserver's audit
//! webhook accepts ours unchanged.
//!
//! The shape follows the API reference of `k8s.io/apiserver/pkg/apis/audit/v1`
//! (`types.go`: `Event`, `EventList`, `ObjectReference`) with
//! `authentication/v1` `UserInfo` and a subset of `meta/v1` `Status`. Fields
//! are serialized in the Go structs' order and with their `omitempty` rules.
//! Items of an `EventList` carry no `kind`/`apiVersion` of their own, as in
//! kube-apiserver's webhook bodies (the list's type meta covers them).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `apiVersion` of audit events, lists and policies.
pub const API_VERSION: &str = "audit.k8s.io/v1";

/// How much of a request an event carries (`Level` in the audit API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// No event at all.
    None,
    /// Request metadata (user, timestamps, resource, verb), no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

impl Level {
    /// At least `other`: `Request` covers `Metadata`, and so on.
    pub fn at_least(self, other: Level) -> bool {
        self >= other
    }
}

/// When in a request's life an event is emitted (`Stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// As soon as the request is received, before anything else.
    RequestReceived,
    /// Long-running requests (exec, attach, watch, port-forward): the
    /// response headers were sent, the body has not ended.
    ResponseStarted,
    /// The response is complete.
    ResponseComplete,
    /// The handler panicked (kube-apiserver only; never emitted by us).
    Panic,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request was about (`ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Empty for the core group.
    #[serde(rename = "apiGroup", default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    /// `exec`, `attach`, `portforward`, `log`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The `meta/v1` `Status` subset an audit event's `responseStatus` carries.
/// kube-apiserver always writes `"metadata":{}`; so do we.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`; empty for plain successes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// A `StatusReason` such as `Forbidden`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The HTTP status code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

impl ResponseStatus {
    /// `{"metadata":{},"code":code}`, as kube-apiserver writes a success.
    pub fn code(code: i32) -> Self {
        ResponseStatus {
            code,
            ..ResponseStatus::default()
        }
    }
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Empty list metadata: serialized as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {}

/// One audit event (`audit.k8s.io/v1` `Event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub level: Level,
    /// A UUID, also sent upstream as the `Audit-ID` header.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// The Kubernetes verb (`get`, `create`, …) for resource requests, the
    /// lower-cased HTTP method for others.
    pub verb: String,
    /// The authenticated caller.
    pub user: UserInfo,
    #[serde(
        rename = "impersonatedUser",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(
        rename = "userAgent",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub user_agent: String,
    #[serde(rename = "objectRef", default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(
        rename = "responseStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_status: Option<ResponseStatus>,
    /// The request body, at level `Request` and above.
    #[serde(
        rename = "requestObject",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_object: Option<serde_json::Value>,
    /// The response body, at level `RequestResponse`.
    #[serde(
        rename = "responseObject",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_object: Option<serde_json::Value>,
    #[serde(rename = "requestReceivedTimestamp")]
    pub request_received_timestamp: MicroTime,
    #[serde(rename = "stageTimestamp")]
    pub stage_timestamp: MicroTime,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A list of events (`audit.k8s.io/v1` `EventList`): the webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventList {
    /// `EventList`.
    pub kind: String,
    /// [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<Event>,
}

impl EventList {
    pub fn new(items: Vec<Event>) -> Self {
        EventList {
            kind: "EventList".to_string(),
            api_version: API_VERSION.to_string(),
            metadata: ListMeta {},
            items,
        }
    }
}

/// The opening of an `EventList` body up to its first item; the batcher
/// joins already serialized events between this and [`LIST_TAIL`]. Field
/// order as kube-apiserver writes it.
pub(crate) const LIST_HEAD: &[u8] =
    br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#;
/// The end of an `EventList` body.
pub(crate) const LIST_TAIL: &[u8] = b"]}";

/// A wall-clock instant with microsecond precision (`metav1.MicroTime`),
/// serialized as RFC 3339 in UTC with exactly six fractional digits:
/// `2026-11-25T20:37:17.123456Z`.
///
/// The core never reads the clock: the caller passes the time in, as Unix
/// microseconds or a [`SystemTime`] it read itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MicroTime {
    micros: i64,
}

impl MicroTime {
    /// `micros` microseconds since 1970-01-01T00:00:00Z.
    pub fn from_unix_micros(micros: i64) -> Self {
        MicroTime { micros }
    }

    /// A wall-clock time the caller read (before 1970 counts backwards;
    /// beyond ±292,000 years saturates).
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros())
                .map(|m| -m)
                .unwrap_or(i64::MIN),
        };
        MicroTime { micros }
    }

    pub fn unix_micros(self) -> i64 {
        self.micros
    }

    /// Parses RFC 3339 (`Z` or a numeric offset, any number of fractional
    /// digits, kept to the microsecond) as Go's `time.Time` would accept it.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            part.iter()
                .try_fold(0i64, |acc, d| Some(acc * 10 + i64::from(d - b'0')))
        };
        let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let mut i = 19;
        let mut frac = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 6 {
                    frac = frac * 10 + i64::from(b.get(i).copied().unwrap_or(b'0') - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..6 {
                frac *= 10;
            }
        }
        let offset = match b.get(i..)? {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let off = (h * 60 + m) * 60;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
        Some(MicroTime {
            micros: secs.checked_mul(1_000_000)?.checked_add(frac)?,
        })
    }
}

impl fmt::Display for MicroTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros.div_euclid(1_000_000);
        let frac = self.micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

impl Serialize for MicroTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MicroTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MicroTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
