//! Shared by the `audit_*` tests: a webhook receiver (hyper) that records
//! every `EventList` it accepts, can be told to answer an error or to go
//! away (refuse connections), and helpers for events and configs.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubecast_core::audit::{
    AuditConfig, Event, EventList, Level, MicroTime, ObjectReference, Stage, UserInfo,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Status(u16),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub status: u16,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub list: Option<EventList>,
}

#[derive(Debug, Default)]
struct State {
    answer: Option<Answer>,
    /// Answers for the next requests, before `answer`.
    script: VecDeque<Answer>,
    log: Vec<Received>,
}

/// A test audit webhook on 127.0.0.1.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with(None).await
    }

    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State::default())),
            tls,
            task: None,
        };
        r.serve(listener);
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/audit", self.addr)
    }

    /// Answer every later request so.
    pub fn answer(&self, a: Answer) {
        self.state.lock().unwrap().answer = Some(a);
    }

    /// Answer the next requests so, then as before.
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Goes away: the listener and every connection are closed.
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Comes back on the same address.
    pub async fn up(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped (aborted) with the accept loop: connections close too.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Received> {
        self.state.lock().unwrap().log.clone()
    }

    /// The `auditID`s of every accepted list, in arrival order.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| r.list.iter().flat_map(|l| l.items.iter()))
            .map(|e| e.audit_id.clone())
            .collect()
    }

    /// Waits (at most `limit`) until `n` events were accepted.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ids = self.accepted_ids();
            if ids.len() >= n || tokio::time::Instant::now() >= deadline {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if req.method() != hyper::Method::POST {
        // e.g. kubectl's version probe (`kubectl config view` may send one).
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let content_type = header("content-type");
    let authorization = header("authorization");
    let body = req.into_body().collect().await?.to_bytes();
    let list: Option<EventList> = serde_json::from_slice(&body).ok();
    let mut s = state.lock().unwrap();
    let answer = s.script.pop_front().or(s.answer).unwrap_or(Answer::Ok);
    let code = match answer {
        Answer::Ok if list.is_none() => 400,
        Answer::Ok => 200,
        Answer::Status(c) => c,
    };
    s.log.push(Received {
        status: code,
        content_type,
        authorization,
        list,
    });
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap();
    Ok(resp)
}

/// Event `n`: `auditID` `ev-NNNN`.
pub fn ev(n: u32) -> Event {
    let t = MicroTime::from_unix_micros(1_700_000_000_000_000 + i64::from(n));
    Event {
        level: Level::Metadata,
        audit_id: id(n),
        stage: Stage::ResponseComplete,
        request_uri: format!("/api/v1/namespaces/default/pods/p{n}"),
        verb: "get".into(),
        user: UserInfo {
            username: "alice".into(),
            ..UserInfo::default()
        },
        impersonated_user: None,
        source_ips: vec!["127.0.0.1".into()],
        user_agent: "kubectl".into(),
        object_ref: Some(ObjectReference {
            resource: "pods".into(),
            namespace: "default".into(),
            name: format!("p{n}"),
            ..ObjectReference::default()
        }),
        response_status: None,
        request_object: None,
        response_object: None,
        request_received_timestamp: t,
        stage_timestamp: t,
        annotations: Default::default(),
    }
}

pub fn id(n: u32) -> String {
    format!("ev-{n:04}")
}

pub fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(id).collect()
}

/// Short waits and backoffs, no throttle.
pub fn fast_config() -> AuditConfig {
    AuditConfig {
        max_batch_wait: Duration::from_millis(50),
        throttle_qps: 0.0,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(800),
        send_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        spill_sync_interval: Duration::from_millis(100),
        ..AuditConfig::default()
    }
}

/// A scratch directory.
pub fn scratch(name: &str) -> kubecast_tests::kubectl::TempDir {
    kubecast_tests::kubectl::TempDir::new(&format!("kubecast-audit-{name}")).unwrap()
}

/// Bounds a whole test.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s")
}
