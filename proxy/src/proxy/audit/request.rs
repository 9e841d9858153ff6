//! Who a request is to the audit log: its `auditID` and what it is about
//! (kube-apiserver's `RequestInfo`).

use kubecast_core::audit::ObjectReference;

/// A UUID v4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`) from the proxy's
/// 128 random bits ([`super::super::record::session_id`]).
pub fn audit_id() -> String {
    let hex = super::super::record::session_id();
    let mut b: Vec<u8> = hex.into_bytes();
    b[12] = b'4';
    b[16] = b"89ab"[usize::from(b[16] % 4)];
    let s = String::from_utf8_lossy(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// What a request is about, as kube-apiserver's `RequestInfo` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: String,
    /// `None` for non-resource requests.
    pub object: Option<ObjectReference>,
    /// Watches and exec/attach/portforward: `ResponseStarted` is emitted.
    pub long_running: bool,
}

/// kube-apiserver's request info: verb, resource, namespace, name,
/// subresource, group and version from the method and path. Exec, attach
/// and port-forward are `create` whatever the method (WebSocket clients
/// use GET).
pub fn request_info(method: &str, path_and_query: &str) -> RequestInfo {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let non_resource = || RequestInfo {
        verb: method.to_ascii_lowercase(),
        object: None,
        long_running: false,
    };
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return non_resource(),
    };
    if rest.is_empty() {
        return non_resource();
    }
    let mut watch_prefix = false;
    if rest[0] == "watch" {
        watch_prefix = true;
        rest = &rest[1..];
    }
    let mut namespace = "";
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = rest[1];
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let resource = rest.first().copied().unwrap_or("");
    let name = rest.get(1).copied().unwrap_or("");
    let subresource = rest.get(2).copied().unwrap_or("");
    let watch_param = query.split('&').any(|kv| {
        matches!(
            kv.split_once('=').unwrap_or((kv, "")),
            ("watch", "true" | "1")
        )
    });
    let streaming = matches!(subresource, "exec" | "attach" | "portforward");
    let verb = if streaming {
        "create"
    } else if watch_prefix {
        "watch"
    } else {
        match method {
            "POST" => "create",
            "GET" | "HEAD" if name.is_empty() && watch_param => "watch",
            "GET" | "HEAD" if name.is_empty() => "list",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            _ => return non_resource(),
        }
    };
    let object = ObjectReference {
        resource: resource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        api_group: group.to_string(),
        api_version: version.to_string(),
        subresource: subresource.to_string(),
        ..ObjectReference::default()
    };
    RequestInfo {
        long_running: streaming || verb == "watch",
        verb: verb.to_string(),
        object: Some(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_ids_are_uuid_v4() {
        for _ in 0..100 {
            let id = audit_id();
            let b = id.as_bytes();
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!((b[8], b[13], b[18], b[23]), (b'-', b'-', b'-', b'-'));
            assert_eq!(b[14], b'4', "{id}");
            assert!(b"89ab".contains(&b[19]), "{id}");
        }
    }

    #[test]
    fn verbs_and_objects() {
        let i = request_info("GET", "/api/v1/namespaces/default/pods/demo");
        assert_eq!(i.verb, "get");
        let o = i.object.unwrap();
        assert_eq!(
            (&*o.resource, &*o.namespace, &*o.name, &*o.api_version),
            ("pods", "default", "demo", "v1")
        );
        let i = request_info(
            "GET",
            "/api/v1/namespaces/default/pods/demo/exec?command=ls",
        );
        assert_eq!((i.verb.as_str(), i.long_running), ("create", true));
        assert_eq!(i.object.unwrap().subresource, "exec");
        assert_eq!(request_info("GET", "/api/v1/pods").verb, "list");
        let w = request_info("GET", "/apis/apps/v1/namespaces/x/deployments?watch=true");
        assert_eq!((w.verb.as_str(), w.long_running), ("watch", true));
        assert_eq!(w.object.unwrap().api_group, "apps");
        assert_eq!(
            request_info("DELETE", "/api/v1/namespaces/x").verb,
            "delete"
        );
        let ns = request_info("GET", "/api/v1/namespaces/x").object.unwrap();
        assert_eq!((&*ns.resource, &*ns.name), ("namespaces", "x"));
        assert_eq!(
            request_info("POST", "/api/v1/namespaces/x/pods").verb,
            "create"
        );
        assert_eq!(request_info("PATCH", "/api/v1/nodes/n").verb, "patch");
        let v = request_info("GET", "/version");
        assert_eq!((v.verb.as_str(), v.object), ("get", None));
    }
}
