//! How an upload is configured: recorders, budgets, windows, caps, headers.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

/// `http` (cleartext: h2c with prior knowledge, or plain HTTP/1.1) or
/// `https` (TLS, ALPN `h2` / `http/1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`, as in a URL and the HTTP/2 `:scheme`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a recorder address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("empty recorder address")]
    Empty,
    #[error("unsupported scheme {0:?} (use http:// or https://)")]
    UnsupportedScheme(String),
    #[error("a recorder address names a server, not a path, query or fragment: {0:?}")]
    HasPath(String),
    #[error("credentials in a recorder address are not supported (use the bearer token)")]
    HasUserinfo,
    #[error("bad host in recorder address: {0:?}")]
    BadHost(String),
    #[error("bad port in recorder address: {0:?}")]
    BadPort(String),
}

/// One recorder: scheme, host and port.
///
/// Parsed from `http://host:port`, `https://host[:port]`, `http://[::1]:8080`
/// or a bare `host:port` (cleartext, as the reference system's address list
/// is written). A trailing `/` is accepted; any other path, a query, a
/// fragment or user credentials are rejected, and so are whitespace, empty
/// hosts, unbracketed IPv6 literals and ports outside 1–65535. Host names are
/// lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecorderAddr {
    scheme: Scheme,
    host: String,
    port: u16,
    ipv6: bool,
}

impl RecorderAddr {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` for dialling (`[v6]:port` for IPv6).
    pub fn host_port(&self) -> String {
        if self.ipv6 {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `Host` header / HTTP/2 `:authority`: the port is left out when it
    /// is the scheme's default.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            if self.ipv6 {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            self.host_port()
        }
    }
}

impl fmt::Display for RecorderAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host_port())
    }
}

impl FromStr for RecorderAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = match scheme.to_ascii_lowercase().as_str() {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    _ => return Err(AddrError::UnsupportedScheme(scheme.to_string())),
                };
                (scheme, rest)
            }
            None => (Scheme::Http, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(AddrError::HasPath(s.to_string()));
        }
        if rest.contains('@') {
            return Err(AddrError::HasUserinfo);
        }
        let (host, port, ipv6) = if let Some(v6) = rest.strip_prefix('[') {
            let (literal, after) = v6
                .split_once(']')
                .ok_or_else(|| AddrError::BadHost(rest.to_string()))?;
            literal
                .parse::<Ipv6Addr>()
                .map_err(|_| AddrError::BadHost(literal.to_string()))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| AddrError::BadHost(rest.to_string()))?,
                ),
            };
            (literal.to_ascii_lowercase(), port, true)
        } else {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                // An IPv6 literal must be bracketed.
                return Err(AddrError::BadHost(rest.to_string()));
            }
            if host.is_empty()
                || host.len() > 253
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(AddrError::BadHost(host.to_string()));
            }
            (host.to_ascii_lowercase(), port, false)
        };
        let port = match port {
            None => scheme.default_port(),
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(AddrError::BadPort(p.to_string()));
                }
                match p.parse::<u16>() {
                    Ok(port) if port != 0 => port,
                    _ => return Err(AddrError::BadPort(p.to_string())),
                }
            }
        };
        Ok(RecorderAddr {
            scheme,
            host,
            port,
            ipv6,
        })
    }
}

impl TryFrom<&str> for RecorderAddr {
    type Error = AddrError;

    fn try_from(s: &str) -> Result<Self, AddrError> {
        s.parse()
    }
}

/// Why an [`UploadConfig`] was rejected by [`super::Upload::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no recorders configured")]
    NoRecorders,
    #[error("recorder #{index} ({address:?}): {source}")]
    BadAddress {
        index: usize,
        address: String,
        source: AddrError,
    },
    #[error("{0} must be longer than zero")]
    Zero(&'static str),
    #[error("the bearer token holds characters not allowed in a header value")]
    BadToken,
    #[error("bad request header name {0:?}")]
    BadHeaderName(String),
    #[error("the value of request header {0:?} holds characters not allowed in a header")]
    BadHeaderValue(String),
    #[error("request header {0:?} is set by the uploader itself")]
    ReservedHeader(String),
}

/// Headers the uploader writes itself; extra headers may not override them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "expect",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "authorization",
    "user-agent",
];

/// How recordings are uploaded. Every field has a production default
/// ([`UploadConfig::default`]) except the recorder list.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Recorders in order of preference; failover walks this list once.
    pub recorders: Vec<RecorderAddr>,
    /// Time one attempt (one connection) gets from `Connect` until the
    /// upload is open: dial + TLS + v2 probe + start (the v2 response head,
    /// or the v1 `100 Continue`). Default 5 s.
    pub attempt_budget: Duration,
    /// Time all attempts together get, probes and fallbacks included,
    /// measured from [`super::Upload::new`]. Default 30 s.
    pub overall_budget: Duration,
    /// v2: an open upload fails when no ack frame arrives for this long
    /// (recorders ack at least every second, idle or not). Default 30 s.
    pub ack_window: Duration,
    /// v1: how long to wait for `100 Continue` before sending the body
    /// anyway (curl's `--expect100-timeout` default). Default 1 s.
    pub continue_wait: Duration,
    /// v1: after the terminal chunk, how long the recorder gets to send its
    /// final response. Default 30 s.
    pub final_response_wait: Duration,
    /// Back-pressure cap: cast bytes accepted but not yet acknowledged (v2)
    /// or not yet handed to the adapter (before the upload opens, and v1).
    /// [`super::Upload::read_budget`] is 0 once it is reached. Default 8 MiB.
    pub max_unacked: usize,
    /// Bearer token sent as `Authorization: Bearer …` (probe and upload).
    pub token: Option<String>,
    /// `User-Agent` of every request. Default `kubecast/<version>`.
    pub user_agent: String,
    /// Extra request headers (names are sent lower-case), e.g.
    /// `x-kubecast-session`. Informational: the recorder names the file
    /// from the cast header. Names the uploader sets itself are rejected.
    pub headers: Vec<(String, String)>,
    /// v1: largest response head (interim or final) buffered. Default 16 KiB.
    pub max_response_head: usize,
    /// v2: longest ack/error frame line buffered. Default 16 KiB.
    pub max_frame_line: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            recorders: Vec::new(),
            attempt_budget: Duration::from_secs(5),
            overall_budget: Duration::from_secs(30),
            ack_window: Duration::from_secs(30),
            continue_wait: Duration::from_secs(1),
            final_response_wait: Duration::from_secs(30),
            max_unacked: 8 * 1024 * 1024,
            token: None,
            user_agent: concat!("kubecast/", env!("CARGO_PKG_VERSION")).to_string(),
            headers: Vec::new(),
            max_response_head: 16 * 1024,
            max_frame_line: 16 * 1024,
        }
    }
}

impl fmt::Debug for UploadConfig {
    /// Like a derived `Debug`, with the token redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadConfig")
            .field("recorders", &self.recorders)
            .field("attempt_budget", &self.attempt_budget)
            .field("overall_budget", &self.overall_budget)
            .field("ack_window", &self.ack_window)
            .field("continue_wait", &self.continue_wait)
            .field("final_response_wait", &self.final_response_wait)
            .field("max_unacked", &self.max_unacked)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user_agent", &self.user_agent)
            .field("headers", &self.headers)
            .field("max_response_head", &self.max_response_head)
            .field("max_frame_line", &self.max_frame_line)
            .finish()
    }
}

impl UploadConfig {
    /// The defaults with `recorders` parsed from address strings.
    pub fn with_recorders<I, S>(recorders: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let recorders = recorders
            .into_iter()
            .enumerate()
            .map(|(index, a)| {
                a.as_ref()
                    .parse()
                    .map_err(|source| ConfigError::BadAddress {
                        index,
                        address: a.as_ref().to_string(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UploadConfig {
            recorders,
            ..UploadConfig::default()
        })
    }

    /// Checks what [`super::Upload::new`] relies on and lower-cases the
    /// extra header names.
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        if self.recorders.is_empty() {
            return Err(ConfigError::NoRecorders);
        }
        for (value, name) in [
            (self.attempt_budget, "the attempt budget"),
            (self.overall_budget, "the overall budget"),
            (self.ack_window, "the ack window"),
            (self.final_response_wait, "the final response wait"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.max_unacked == 0 {
            return Err(ConfigError::Zero("the back-pressure cap"));
        }
        if self.max_response_head == 0 || self.max_frame_line == 0 {
            return Err(ConfigError::Zero("a wire length limit"));
        }
        if let Some(token) = &self.token {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::BadToken);
            }
        }
        if !valid_value(&self.user_agent) {
            return Err(ConfigError::BadHeaderValue("user-agent".into()));
        }
        for (name, value) in &mut self.headers {
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(ConfigError::BadHeaderName(name.clone()));
            }
            name.make_ascii_lowercase();
            if RESERVED.contains(&name.as_str()) {
                return Err(ConfigError::ReservedHeader(name.clone()));
            }
            if !valid_value(value) {
                return Err(ConfigError::BadHeaderValue(name.clone()));
            }
        }
        Ok(())
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, spaces and tabs: safe in an HTTP/1.1 head and in HTTP/2.
fn valid_value(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
}
