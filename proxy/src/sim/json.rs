//! The JSON documents the upstream serves: version, discovery, pods,
//! TokenReviews, Status.

use serde_json::{json, Value};

use super::{PodSpec, ReviewedUser, UpstreamConfig};

/// A fixed creation time: the upstream is deterministic.
const CREATED: &str = "2025-01-01T00:00:00Z";

/// `GET /version`. (The kubectl dispatcher some machines ship picks its
/// kubectl from this.)
pub(crate) fn version(config: &UpstreamConfig) -> Value {
    let minor = config
        .git_version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .unwrap_or("32")
        .to_string();
    json!({
        "major": "1",
        "minor": minor,
        "gitVersion": config.git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": CREATED,
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`: the legacy group's versions.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `GET /apis`: no named groups (exec and attach live in the core group).
pub(crate) fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

/// `GET /api/v1`: the core group's resources that matter here.
pub(crate) fn api_resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "verbs": ["get", "list"], "shortNames": ["ns"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
        ],
    })
}

/// A realistic `v1.Pod`.
pub(crate) fn pod(pod: &PodSpec) -> Value {
    let running = pod.phase == "Running";
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image,
                "command": c.main,
                "stdin": c.stdin,
                "tty": c.tty,
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            })
        })
        .collect();
    let statuses: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            let state = if running {
                json!({"running": {"startedAt": CREATED}})
            } else {
                let code = pod.exit_code.unwrap_or(0);
                let reason = if code == 0 { "Completed" } else { "Error" };
                json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": CREATED, "finishedAt": CREATED}})
            };
            json!({
                "name": c.name,
                "state": state,
                "lastState": {},
                "ready": running,
                "restartCount": 0,
                "image": c.image,
                "imageID": format!("{}@sha256:{}", c.image, "0".repeat(64)),
                "containerID": format!("containerd://{}", "1".repeat(64)),
                "started": running,
            })
        })
        .collect();
    let uid = format!(
        "00000000-0000-4000-8000-{:012x}",
        fnv(&format!("{}/{}", pod.namespace, pod.name)) & 0xffff_ffff_ffff
    );
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": uid,
            "resourceVersion": "1",
            "creationTimestamp": CREATED,
            "labels": {"app": pod.name},
        },
        "spec": {
            "containers": containers,
            "restartPolicy": pod.restart_policy,
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": "node-1",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": pod.phase,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": CREATED},
                {"type": "Ready", "status": if running { "True" } else { "False" }, "lastTransitionTime": CREATED},
                {"type": "ContainersReady", "status": if running { "True" } else { "False" }, "lastTransitionTime": CREATED},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": CREATED},
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0.10",
            "podIPs": [{"ip": "10.244.0.10"}],
            "startTime": CREATED,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        },
    })
}

/// The answer to a TokenReview of `token`: the review as posted (the API
/// server returns the object it was given, `spec.token` included) with its
/// status — `authenticated` and the user when `user` is known, else an
/// empty user (`authenticated` is omitted when false).
pub(crate) fn token_review(token: &str, user: Option<&ReviewedUser>) -> Value {
    let status = match user {
        Some(user) => json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": user.uid, "groups": user.groups},
            "audiences": ["https://kubernetes.default.svc.cluster.local"],
        }),
        None => json!({"user": {}}),
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token},
        "status": status,
    })
}

/// A `metav1.Status` failure as the API server writes it in a response body.
pub(crate) fn status_failure(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let (Some(details), Some(obj)) = (details, status.as_object_mut()) {
        obj.insert("details".into(), details);
    }
    status
}

/// The Status the kubelet writes on the error stream/channel (v4/v5) when a
/// session ends: `metav1.Status` marshalled without TypeMeta.
pub(crate) fn exec_status(exit: &super::container::Exit, command: &[String]) -> Value {
    use super::container::Exit;
    match exit {
        Exit::Code(0) => json!({"metadata": {}, "status": "Success"}),
        Exit::Code(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Exit::StartFailed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: error executing command in container: {message}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": format!("error executing command in container: {message}")}]},
            "code": 500,
        }),
    }
}

/// The plain text the v1–v3 protocols write on the error stream (nothing on
/// success).
pub(crate) fn exec_error_text(exit: &super::container::Exit, command: &[String]) -> Option<String> {
    use super::container::Exit;
    match exit {
        Exit::Code(0) => None,
        Exit::Code(code) => Some(format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        )),
        Exit::StartFailed(message) => Some(format!("error executing command in container: {message}")),
    }
}

/// A tiny stable hash for deterministic uids.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
