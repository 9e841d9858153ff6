//! The wire shape of events and lists, and `MicroTime`.

use super::*;
use std::collections::BTreeMap;

/// A kube-apiserver webhook body for one `kubectl exec`, written by hand
/// from the API reference of `audit.k8s.io/v1` (`Event`, `EventList`,
/// `ObjectReference` in `k8s.io/apiserver/pkg/apis/audit/v1/types.go`,
/// `UserInfo` from `authentication.k8s.io/v1`, `Status` from `meta/v1`):
/// field names, their order (the Go structs'), `omitempty` fields left out,
/// `"metadata":{}` on the list and on the status as kube-apiserver writes
/// them, items without `kind`/`apiVersion`.
const KUBE_APISERVER_BODY: &str = concat!(
    r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"#,
    r#""level":"Metadata","auditID":"2a1ee4cb-5f12-4dcf-9c4e-0a8e3e4d9b1f","#,
    r#""stage":"ResponseStarted","#,
    r#""requestURI":"/api/v1/namespaces/default/pods/web-0/exec?command=sh\u0026container=web\u0026stdin=true\u0026stdout=true\u0026tty=true","#,
    r#""verb":"create","#,
    r#""user":{"username":"alice","uid":"4f2c","groups":["dev","system:authenticated"],"extra":{"scopes":["view"]}},"#,
    r#""impersonatedUser":{"username":"bob","groups":["ops"]},"#,
    r#""sourceIPs":["192.0.2.10"],"#,
    r#""userAgent":"kubectl/v1.33.0 (linux/amd64) kubernetes/8adc0f0","#,
    r#""objectRef":{"resource":"pods","namespace":"default","name":"web-0","apiVersion":"v1","subresource":"exec"},"#,
    r#""responseStatus":{"metadata":{},"code":101},"#,
    r#""requestReceivedTimestamp":"2026-11-25T20:37:17.123456Z","#,
    r#""stageTimestamp":"2026-11-25T20:37:17.130001Z","#,
    r#""annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}"#,
    r#"}]}"#
);

fn exec_event() -> Event {
    let t = 1_795_639_037_123_456;
    Event {
        level: Level::Metadata,
        audit_id: "2a1ee4cb-5f12-4dcf-9c4e-0a8e3e4d9b1f".into(),
        stage: Stage::ResponseStarted,
        request_uri: "/api/v1/namespaces/default/pods/web-0/exec?command=sh&container=web&stdin=true&stdout=true&tty=true".into(),
        verb: "create".into(),
        user: UserInfo {
            username: "alice".into(),
            uid: "4f2c".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".into(), vec!["view".into()])]),
        },
        impersonated_user: Some(UserInfo {
            username: "bob".into(),
            groups: vec!["ops".into()],
            ..UserInfo::default()
        }),
        source_ips: vec!["192.0.2.10".into()],
        user_agent: "kubectl/v1.33.0 (linux/amd64) kubernetes/8adc0f0".into(),
        object_ref: Some(ObjectReference {
            resource: "pods".into(),
            namespace: "default".into(),
            name: "web-0".into(),
            api_version: "v1".into(),
            subresource: "exec".into(),
            ..ObjectReference::default()
        }),
        response_status: Some(ResponseStatus::code(101)),
        request_object: None,
        response_object: None,
        request_received_timestamp: MicroTime::from_unix_micros(t),
        stage_timestamp: MicroTime::from_unix_micros(t + 6_545),
        annotations: BTreeMap::from([
            ("authorization.k8s.io/decision".into(), "allow".into()),
            ("authorization.k8s.io/reason".into(), "RBAC: allowed".into()),
        ]),
    }
}

#[test]
fn an_event_list_has_kube_apiservers_shape() {
    let ours = serde_json::to_value(EventList::new(vec![exec_event()])).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(KUBE_APISERVER_BODY).unwrap();
    assert_eq!(ours, theirs);
    // And it reads back (receivers in our tests use these types).
    let back: EventList = serde_json::from_str(KUBE_APISERVER_BODY).unwrap();
    assert_eq!(back.items, [exec_event()]);
}

#[test]
fn the_batchers_body_is_that_list_byte_for_byte_in_field_order() {
    let mut h = Harness::new(AuditConfig {
        max_batch_size: 1,
        max_spill_bytes: 0,
        ..AuditConfig::default()
    });
    h.b.push(h.t0, &exec_event());
    let (_, body) = sends(&h.drain()).remove(0);
    // serde_json escapes `&` as itself; Go as \u0026: compare after that.
    let go = KUBE_APISERVER_BODY.replace("\\u0026", "&");
    assert_eq!(std::str::from_utf8(&body).unwrap(), go);
    assert_eq!(
        body,
        serde_json::to_vec(&EventList::new(vec![exec_event()])).unwrap()
    );
}

#[test]
fn a_failure_status_carries_status_reason_and_message() {
    let status = ResponseStatus {
        status: "Failure".into(),
        message: "pods \"web-0\" is forbidden".into(),
        reason: "Forbidden".into(),
        code: 403,
        ..ResponseStatus::default()
    };
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"metadata":{},"status":"Failure","message":"pods \"web-0\" is forbidden","reason":"Forbidden","code":403}"#
    );
}

#[test]
fn micro_time_is_rfc3339_with_six_digits_in_utc() {
    let t = MicroTime::from_unix_micros(1_795_639_037_123_456);
    assert_eq!(t.to_string(), "2026-11-25T20:37:17.123456Z");
    assert_eq!(
        MicroTime::from_unix_micros(1_709_251_199_000_001).to_string(),
        "2024-02-29T23:59:59.000001Z"
    );
    assert_eq!(
        MicroTime::from_unix_micros(0).to_string(),
        "1970-01-01T00:00:00.000000Z"
    );
    assert_eq!(
        MicroTime::from_unix_micros(-1).to_string(),
        "1969-12-31T23:59:59.999999Z"
    );
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#""2026-11-25T20:37:17.123456Z""#
    );
    let st = std::time::UNIX_EPOCH + Duration::from_micros(1_795_639_037_123_456);
    assert_eq!(MicroTime::from_system_time(st), t);
}

#[test]
fn micro_time_parses_what_kubernetes_writes() {
    let t = MicroTime::from_unix_micros(1_795_639_037_123_456);
    for s in [
        "2026-11-25T20:37:17.123456Z",
        "2026-11-25T20:37:17.123456789Z",
        "2026-11-25T21:37:17.123456+01:00",
    ] {
        assert_eq!(MicroTime::parse(s), Some(t), "{s}");
    }
    assert_eq!(
        MicroTime::parse("2026-11-25T20:37:17Z"),
        Some(MicroTime::from_unix_micros(1_795_639_037_000_000))
    );
    for bad in [
        "",
        "2026-11-25",
        "2026-13-25T20:37:17Z",
        "2026-02-29T20:37:17Z",
        "2026-11-25T20:37:17.Z",
        "2026-11-25T20:37:17",
        "2026-11-25T20:37:17+0100",
        "２026-11-25T20:37:17Z",
    ] {
        assert_eq!(MicroTime::parse(bad), None, "{bad}");
    }
}

proptest::proptest! {
    #[test]
    fn micro_time_round_trips(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
        let t = MicroTime::from_unix_micros(micros);
        proptest::prop_assert_eq!(MicroTime::parse(&t.to_string()), Some(t));
    }
}
