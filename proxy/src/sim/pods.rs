//! The pods the upstream knows, as a live table: listed (with
//! `fieldSelector=metadata.name=…`), watched, created, deleted, and
//! terminated when the main process of a `restartPolicy: Never` pod exits.
//!
//! That is what `kubectl run -i/-it` needs: it creates a pod, waits
//! (list + watch) for it to be running, attaches, waits for it to complete
//! to learn its exit code, and with `--rm` deletes it. Every change bumps a
//! revision that is the objects' `resourceVersion`, so a watch from a
//! version sees what changed after it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::{json as docs, ContainerSpec, PodSpec};

/// The longest a watch stays open when the client does not say
/// (`timeoutSeconds`); kube-apiserver picks 30–60 minutes, tests need less.
const WATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Watch events queued for a slow client before the watch waits.
const WATCH_QUEUE: usize = 16;

/// One pod and the revisions of its creation and its last change.
#[derive(Debug, Clone)]
struct LivePod {
    spec: PodSpec,
    created: u64,
    version: u64,
}

/// The live pod table.
#[derive(Debug)]
pub(crate) struct Pods {
    table: Mutex<Vec<LivePod>>,
    /// The current revision; bumped (and watchers woken) on every change.
    revision: watch::Sender<u64>,
}

impl Pods {
    pub(crate) fn new(initial: &[PodSpec]) -> Pods {
        let table = initial
            .iter()
            .map(|spec| LivePod {
                spec: spec.clone(),
                created: 1,
                version: 1,
            })
            .collect();
        Pods {
            table: Mutex::new(table),
            revision: watch::channel(1).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LivePod>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A snapshot of every pod.
    pub(crate) fn all(&self) -> Vec<PodSpec> {
        self.lock().iter().map(|p| p.spec.clone()).collect()
    }

    /// The pod `namespace/name`.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<PodSpec> {
        self.lock()
            .iter()
            .find(|p| p.spec.namespace == namespace && p.spec.name == name)
            .map(|p| p.spec.clone())
    }

    /// Applies `change` to the table under a new revision; `change` returns
    /// whether it changed anything.
    fn change(&self, change: impl FnOnce(&mut Vec<LivePod>, u64) -> bool) -> bool {
        let mut table = self.lock();
        let next = *self.revision.borrow() + 1;
        let changed = change(&mut table, next);
        if changed {
            self.revision.send_replace(next);
        }
        changed
    }

    /// The main process of `namespace/name` exited with `code`: a pod that
    /// does not restart it is now `Succeeded` or `Failed`.
    pub(crate) fn main_exited(&self, namespace: &str, name: &str, code: u8) {
        self.change(|table, version| {
            let Some(pod) = table
                .iter_mut()
                .find(|p| p.spec.namespace == namespace && p.spec.name == name)
            else {
                return false;
            };
            let restarts = match pod.spec.restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            if restarts {
                return false;
            }
            pod.spec.phase = if code == 0 { "Succeeded" } else { "Failed" }.to_string();
            pod.spec.exit_code = Some(code);
            pod.version = version;
            true
        });
    }

    /// The pod JSON of `pod` at its revision.
    fn object(pod: &LivePod) -> Value {
        let mut object = docs::pod(&pod.spec);
        object["metadata"]["resourceVersion"] = json!(pod.version.to_string());
        object
    }

    /// `GET …/pods[?fieldSelector=metadata.name=NAME]`.
    pub(crate) fn list(&self, namespace: &str, query: &str) -> Value {
        let name = field_selector_name(query);
        let table = self.lock();
        let items: Vec<Value> = table
            .iter()
            .filter(|p| p.spec.namespace == namespace)
            .filter(|p| name.as_deref().is_none_or(|n| p.spec.name == n))
            .map(Self::object)
            .collect();
        json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self.revision.borrow().to_string()},
            "items": items,
        })
    }

    /// `POST …/pods`: creates the pod `body` describes. `Err` is the status
    /// code and a message for a Status.
    pub(crate) fn create(&self, namespace: &str, body: &Value) -> Result<Value, (u16, String)> {
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            return Err((
                422,
                "Pod \"\" is invalid: metadata.name: Required value".into(),
            ));
        }
        let containers = body["spec"]["containers"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                (
                    422,
                    format!("Pod \"{name}\" is invalid: spec.containers: Required value"),
                )
            })?;
        let containers: Vec<ContainerSpec> = containers.iter().map(container).collect();
        let mut spec = PodSpec::new(namespace, name, containers);
        spec.restart_policy = body["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string();
        let mut created = None;
        self.change(|table, version| {
            if table
                .iter()
                .any(|p| p.spec.namespace == namespace && p.spec.name == name)
            {
                return false;
            }
            let pod = LivePod {
                spec,
                created: version,
                version,
            };
            created = Some(Self::object(&pod));
            table.push(pod);
            true
        });
        created.ok_or_else(|| (409, format!("pods \"{name}\" already exists")))
    }

    /// `DELETE …/pods/NAME`: the pod as it was, or `None` if unknown.
    pub(crate) fn delete(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut deleted = None;
        self.change(|table, version| {
            let Some(index) = table
                .iter()
                .position(|p| p.spec.namespace == namespace && p.spec.name == name)
            else {
                return false;
            };
            let mut pod = table.remove(index);
            pod.version = version;
            deleted = Some(Self::object(&pod));
            true
        });
        deleted
    }

    /// `GET …/pods?watch=true`: a streaming body of watch events for the
    /// pods of `namespace` (and the selected name) that changed after the
    /// query's `resourceVersion` (all of them, as `ADDED`, without one), then
    /// every change until `timeoutSeconds` or the client goes away.
    pub(crate) fn watch(self: &Arc<Self>, namespace: &str, query: &str) -> WatchBody {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let pods = self.clone();
        let namespace = namespace.to_string();
        let name = field_selector_name(query);
        let since: u64 = query_value(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = query_value(query, "timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .map_or(WATCH_TIMEOUT, |s: u64| {
                Duration::from_secs(s).min(WATCH_TIMEOUT)
            });
        tokio::spawn(async move {
            let mut revision = pods.revision.subscribe();
            let mut seen: HashMap<String, u64> = HashMap::new();
            let deadline = tokio::time::Instant::now() + timeout;
            let selected = |p: &LivePod| {
                p.spec.namespace == namespace && name.as_deref().is_none_or(|n| p.spec.name == n)
            };
            // What the client knows already: the pods that existed at
            // `since`, as they were then (a later change is MODIFIED).
            for pod in pods.lock().iter().filter(|p| selected(p)) {
                if since > 0 && pod.created <= since {
                    seen.insert(pod.spec.name.clone(), pod.version.min(since));
                }
            }
            loop {
                revision.borrow_and_update();
                let events = {
                    let table = pods.lock();
                    let mut events = Vec::new();
                    for pod in table.iter().filter(|p| selected(p)) {
                        match seen.insert(pod.spec.name.clone(), pod.version) {
                            None => events.push(("ADDED", Self::object(pod))),
                            Some(v) if v != pod.version => {
                                events.push(("MODIFIED", Self::object(pod)))
                            }
                            Some(_) => {}
                        }
                    }
                    let gone: Vec<String> = seen
                        .keys()
                        .filter(|n| !table.iter().any(|p| selected(p) && &p.spec.name == *n))
                        .cloned()
                        .collect();
                    for n in gone {
                        seen.remove(&n);
                        let mut object = docs::pod(&PodSpec::new(&namespace, &n, Vec::new()));
                        object["metadata"]["resourceVersion"] =
                            json!(revision.borrow().to_string());
                        events.push(("DELETED", object));
                    }
                    events
                };
                for (kind, object) in events {
                    let mut line = json!({"type": kind, "object": object}).to_string();
                    line.push('\n');
                    if tx.send(Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = revision.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tx.closed() => return,
                }
            }
        });
        WatchBody { events: rx }
    }
}

/// A container of a created pod: its main process is `command` + `args`
/// (a shell without either, as an image's default would be).
fn container(value: &Value) -> ContainerSpec {
    let words = |field: &str| -> Vec<String> {
        value[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut main = words("command");
    main.extend(words("args"));
    if main.is_empty() {
        main.push("sh".to_string());
    }
    let mut spec = ContainerSpec::new(
        value["name"].as_str().unwrap_or("main"),
        &[],
        value["tty"].as_bool().unwrap_or(false),
    );
    spec.main = main;
    spec.stdin = value["stdin"].as_bool().unwrap_or(false);
    if let Some(image) = value["image"].as_str() {
        spec.image = image.to_string();
    }
    spec
}

/// The value of `key` in a query string (percent-decoded).
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

/// `fieldSelector=metadata.name=NAME` (or `==`), the one selector kubectl
/// uses on pods.
fn field_selector_name(query: &str) -> Option<String> {
    let selector = query_value(query, "fieldSelector")?;
    let name = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))?;
    Some(name.to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a watch response: newline-delimited watch events as they
/// happen.
#[derive(Debug)]
pub(crate) struct WatchBody {
    events: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_pod(restart: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "t1"},
            "spec": {"restartPolicy": restart, "containers": [
                {"name": "t1", "image": "busybox", "args": ["echo", "hi"], "stdin": true}
            ]}
        })
    }

    #[test]
    fn created_pods_are_listed_by_name_and_terminate_by_restart_policy() {
        let pods = Pods::new(&[]);
        let created = pods.create("default", &run_pod("Never")).unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "2");
        assert_eq!(
            created["spec"]["containers"][0]["command"],
            json!(["echo", "hi"])
        );
        assert_eq!(
            pods.create("default", &run_pod("Never")).unwrap_err().0,
            409
        );
        let list = pods.list("default", "fieldSelector=metadata.name%3Dt1&limit=500");
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            pods.list("default", "fieldSelector=metadata.name%3Dt2")["items"],
            json!([])
        );

        pods.main_exited("default", "t1", 3);
        let pod = pods.get("default", "t1").unwrap();
        assert_eq!((pod.phase.as_str(), pod.exit_code), ("Failed", Some(3)));
        assert!(pods.delete("default", "t1").is_some());
        assert!(pods.get("default", "t1").is_none());
    }

    #[test]
    fn pods_that_restart_stay_running() {
        let pods = Pods::new(&[]);
        pods.create("default", &run_pod("Always")).unwrap();
        pods.main_exited("default", "t1", 0);
        assert_eq!(pods.get("default", "t1").unwrap().phase, "Running");
    }

    #[tokio::test]
    async fn a_watch_sees_changes_after_its_version() {
        use http_body_util::BodyExt;
        let pods = Arc::new(Pods::new(&[]));
        pods.create("default", &run_pod("Never")).unwrap();
        let mut body = pods.watch(
            "default",
            "fieldSelector=metadata.name%3Dt1&resourceVersion=2&watch=true",
        );
        pods.main_exited("default", "t1", 0);
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let event: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(event["type"], "MODIFIED");
        assert_eq!(event["object"]["status"]["phase"], "Succeeded");
        pods.delete("default", "t1");
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let event: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(event["type"], "DELETED");
    }
}
