//! Who is calling, and what goes upstream on their behalf.
//!
//! - `noauth`: nothing is checked; the caller's own credentials go upstream
//!   unchanged and nothing is impersonated.
//! - `token`: a bearer token (the `Authorization` header, or the WebSocket
//!   subprotocol `base64url.bearer.authorization.k8s.io.…` browsers use)
//!   looked up in a kube-apiserver static token file.
//! - `x509`: the client certificate verified by the TLS listener against
//!   `--client-ca`; CN is the user, each O a group.
//!
//! In `token`/`x509` mode [`rewrite_headers`] removes `Authorization`, the
//! bearer subprotocol and every `Impersonate-*` header, then sets
//! `Impersonate-User`, `Impersonate-Group` (one per group) and
//! `Impersonate-Uid`; the proxy's own upstream credentials are added by the
//! caller. A client that sends `Impersonate-*` itself is refused (403).

use super::status::Refusal;
use base64::Engine;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use kubecast_core::handshake::BEARER_SUBPROTOCOL_PREFIX;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Forward the caller's own credentials unchanged; no impersonation.
    Noauth,
    /// Bearer tokens from --token-auth-file; impersonate the token's user.
    Token,
    /// Client certificates signed by --client-ca; impersonate CN / O.
    X509,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// Empty when unknown.
    pub uid: String,
    pub groups: Vec<String>,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `--auth noauth`: the caller's own credentials went upstream, nothing
    /// is impersonated. Who it is, the proxy knows only when the API server
    /// told it in a TokenReview of the caller's bearer token
    /// ([`super::review`]); `None` otherwise.
    Passthrough(Option<UserInfo>),
    /// Authenticated by the proxy and impersonated upstream.
    User(UserInfo),
}

impl Caller {
    /// The user name for logs (`-` when unknown).
    pub fn name(&self) -> &str {
        self.user().map_or("-", |u| u.name.as_str())
    }

    /// The user, when known (authenticated, or reviewed in noauth mode).
    pub fn user(&self) -> Option<&UserInfo> {
        match self {
            Caller::Passthrough(reviewed) => reviewed.as_ref(),
            Caller::User(u) => Some(u),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks callers.
#[derive(Debug)]
pub(crate) enum Authenticator {
    Noauth,
    Token(HashMap<String, UserInfo>),
    X509,
}

impl Authenticator {
    /// Who sent `headers`; `cert_user` is the connection's client
    /// certificate identity (x509 mode). A refusal comes with the user's
    /// name when it is known (for the log).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert_user: Option<&Result<UserInfo, String>>,
    ) -> Result<Caller, (Refusal, Option<String>)> {
        let user = match self {
            Authenticator::Noauth => return Ok(Caller::Passthrough(None)),
            Authenticator::Token(tokens) => bearer_token(headers)
                .and_then(|t| tokens.get(&t))
                .cloned()
                .ok_or_else(|| (Refusal::unauthorized(), None))?,
            Authenticator::X509 => match cert_user {
                Some(Ok(user)) => user.clone(),
                _ => return Err((Refusal::unauthorized(), None)),
            },
        };
        if let Some(name) = headers
            .keys()
            .find(|name| name.as_str().starts_with("impersonate-"))
        {
            let refusal = Refusal::forbidden(format!(
                "impersonation is not allowed through this kubecast proxy: the request asked \
                 for it with the {name} header (kubectl --as/--as-group/--as-uid); the proxy \
                 already acts as the authenticated user {:?}",
                user.name
            ));
            return Err((refusal, Some(user.name)));
        }
        Ok(Caller::User(user))
    }
}

/// The bearer token of a request: `Authorization: Bearer …`, else the
/// WebSocket bearer subprotocol.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_SUBPROTOCOL_PREFIX))
        .and_then(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Rewrites the request headers for the upstream in token/x509 mode: the
/// caller's credentials and impersonation headers out, the caller's
/// identity in.
pub(crate) fn rewrite_headers(headers: &mut HeaderMap, user: &UserInfo) -> Result<(), Refusal> {
    headers.remove(AUTHORIZATION);
    let impersonate: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for name in impersonate {
        headers.remove(name);
    }
    // Drop the bearer subprotocol offer, keep the others.
    let offers: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    if offers
        .iter()
        .any(|p| p.starts_with(BEARER_SUBPROTOCOL_PREFIX))
    {
        headers.remove("sec-websocket-protocol");
        let kept: Vec<&str> = offers
            .iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty() && !p.starts_with(BEARER_SUBPROTOCOL_PREFIX))
            .collect();
        if !kept.is_empty() {
            let value = HeaderValue::from_str(&kept.join(", "))
                .map_err(|_| Refusal::bad_request("invalid Sec-WebSocket-Protocol"))?;
            headers.insert("sec-websocket-protocol", value);
        }
    }
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| {
            Refusal::internal(format!("the identity {s:?} cannot be sent as a header"))
        })
    };
    headers.insert("impersonate-user", value(&user.name)?);
    for group in &user.groups {
        headers.append("impersonate-group", value(group)?);
    }
    if !user.uid.is_empty() {
        headers.insert("impersonate-uid", value(&user.uid)?);
    }
    Ok(())
}

/// Reads a kube-apiserver static token file: CSV lines
/// `token,user,uid[,"group1,group2,…"]`, fields optionally double-quoted
/// (`""` is a quote), blank lines skipped. Any malformed line is an error
/// naming its line number.
pub(crate) fn read_token_file(path: &Path) -> Result<HashMap<String, UserInfo>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--token-auth-file {}: {e}", path.display()))?;
    parse_token_file(&text).map_err(|e| format!("--token-auth-file {}: {e}", path.display()))
}

pub(crate) fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut tokens = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields = parse_csv_line(line).map_err(|e| format!("line {number}: {e}"))?;
        if fields.len() < 3 {
            return Err(format!(
                "line {number}: expected token,user,uid[,\"groups\"], found {} field(s)",
                fields.len()
            ));
        }
        if fields.len() > 4 {
            return Err(format!(
                "line {number}: {} fields; quote the groups: token,user,uid,\"group1,group2\"",
                fields.len()
            ));
        }
        let (token, name) = (fields[0].trim(), fields[1].trim());
        if token.is_empty() || name.is_empty() {
            return Err(format!(
                "line {number}: the token and the user must not be empty"
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("line {number}: the token contains whitespace"));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            name: name.to_string(),
            uid: fields[2].trim().to_string(),
            groups,
        };
        if tokens.insert(token.to_string(), user).is_some() {
            return Err(format!("line {number}: duplicate token"));
        }
    }
    Ok(tokens)
}

/// One CSV record (RFC 4180 quoting; spaces before a field are ignored).
fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') || chars.peek() == Some(&'\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// The verifier for `--client-ca`: certificates must chain to it; clients
/// without one are let through the handshake and get a 401.
pub(crate) fn client_verifier(
    ca: &Path,
) -> Result<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let roots = crate::net::root_store(crate::net::load_certs(ca, "--client-ca")?, "--client-ca")?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        crate::net::crypto_provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("--client-ca {}: {e}", ca.display()))
}

/// The user a verified client certificate names: CN is the user, each O a
/// group (as kube-apiserver reads client certificates).
pub(crate) fn cert_user(certs: &[CertificateDer<'_>]) -> Result<UserInfo, String> {
    let leaf = certs.first().ok_or("no client certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or("the client certificate has no common name")?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_with_quoted_groups() {
        let tokens = parse_token_file(
            "\u{feff}t1,alice,u-1,\"dev,ops\"\n\n  t2, bob ,u-2\nt3,\"c, \"\"the\"\" one\",,\n",
        )
        .unwrap();
        assert_eq!(
            tokens["t1"],
            UserInfo {
                name: "alice".into(),
                uid: "u-1".into(),
                groups: vec!["dev".into(), "ops".into()]
            }
        );
        assert_eq!(tokens["t2"].name, "bob");
        assert!(tokens["t2"].groups.is_empty());
        assert_eq!(tokens["t3"].name, "c, \"the\" one");
        assert_eq!(tokens["t3"].uid, "");
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, expect) in [
            ("a,b,c\nonly,two\n", "line 2: expected"),
            ("a,b,c\nx,y,z,\"g\n", "line 2: unterminated"),
            ("a,b,c\n\na,d,e\n", "line 3: duplicate"),
            ("a,b,c,g1,g2\n", "line 1: 5 fields"),
            (",b,c\n", "line 1: the token and the user"),
            ("a,b\"x,c\n", "line 1: a quote"),
        ] {
            let err = parse_token_file(text).unwrap_err();
            assert!(err.starts_with(expect), "{text:?}: {err}");
        }
    }

    #[test]
    fn bearer_from_header_or_subprotocol() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc "));
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(
                "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.YWJj",
            ),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
        let user = UserInfo {
            name: "alice".into(),
            uid: "7".into(),
            groups: vec!["a".into(), "b".into()],
        };
        h.insert("impersonate-extra-x", HeaderValue::from_static("y"));
        rewrite_headers(&mut h, &user).unwrap();
        assert_eq!(h["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(h["impersonate-user"], "alice");
        assert_eq!(h["impersonate-uid"], "7");
        assert_eq!(h.get_all("impersonate-group").iter().count(), 2);
        assert!(h.get("impersonate-extra-x").is_none());
    }
}
