//! Errors the proxy answers itself, as Kubernetes `Status` objects (what
//! kubectl parses and prints as `Error from server (Reason): message`).

use super::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::json;

/// A request the proxy answers with an error instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: StatusCode,
    /// The `metav1.StatusReason`, e.g. `Forbidden`.
    pub reason: &'static str,
    /// What kubectl prints.
    pub message: String,
}

impl Refusal {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason,
            message: message.into(),
        }
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized() -> Refusal {
        Refusal::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403 with a message saying why.
    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// 502: the upstream could not be reached or failed mid-response head.
    pub fn bad_gateway(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_GATEWAY, "ServiceUnavailable", message)
    }

    /// 504: the upstream did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// The `Status` JSON document.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        })
    }

    /// The HTTP response (HTTP/1.1 or HTTP/2; the caller adds nothing).
    pub fn into_response(self) -> Response<Body> {
        let body = self.body().to_string();
        let mut response =
            Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
        *response.status_mut() = self.code;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.code == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kubecast\""),
            );
        }
        response
    }
}
