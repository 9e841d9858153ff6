//! Audit policy matching, kube-apiserver's rules.

use super::*;

/// A policy in kube-apiserver's own format (as JSON; the proxy reads YAML
/// into the same types).
const POLICY: &str = r#"{
  "apiVersion": "audit.k8s.io/v1",
  "kind": "Policy",
  "omitStages": ["RequestReceived"],
  "rules": [
    {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
    {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
    {"level": "RequestResponse", "resources": [{"group": "", "resources": ["pods/exec", "pods/attach"]}],
     "omitStages": ["ResponseStarted"]},
    {"level": "Request", "userGroups": ["ops"], "namespaces": ["kube-system"]},
    {"level": "Metadata", "resources": [{"group": "apps", "resources": ["*/scale"]}]},
    {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"], "resourceNames": ["db"]}]},
    {"level": "Request", "resources": [{"group": "", "resources": ["configmaps/*"]}]},
    {"level": "Metadata", "omitStages": ["ResponseComplete"]}
  ]
}"#;

fn res<'a>(group: &'a str, resource: &'a str, sub: &'a str, ns: &'a str) -> ResourceAttributes<'a> {
    ResourceAttributes {
        group,
        resource,
        subresource: sub,
        namespace: ns,
        name: "",
    }
}

fn decide(
    policy: &Policy,
    user: &str,
    groups: &[String],
    verb: &str,
    r: Option<ResourceAttributes<'_>>,
    path: &str,
) -> Decision {
    policy.evaluate(&Attributes {
        user,
        groups,
        verb,
        resource: r,
        path,
    })
}

#[test]
fn the_first_matching_rule_wins() {
    let p = Policy::from_json(POLICY.as_bytes()).unwrap();
    let none: &[String] = &[];
    let ops = ["ops".to_string()];
    let pods = res("", "pods", "", "default");
    assert_eq!(
        decide(&p, "system:kube-proxy", none, "watch", Some(pods), "").level,
        Level::None
    );
    assert_eq!(
        decide(&p, "system:kube-proxy", none, "list", Some(pods), "").level,
        Level::Metadata
    );
    // `pods/exec` in kube-system: rule 3 comes before the ops rule.
    let exec = res("", "pods", "exec", "kube-system");
    let d = decide(&p, "carol", &ops, "create", Some(exec), "");
    assert_eq!(d.level, Level::RequestResponse);
    assert_eq!(
        d.omit_stages,
        [Stage::RequestReceived, Stage::ResponseStarted]
    );
    assert!(!d.emits(Stage::ResponseStarted) && d.emits(Stage::ResponseComplete));
    // `pods` alone does not match `pods/exec`.
    let d = decide(
        &p,
        "carol",
        &ops,
        "get",
        Some(res("", "pods", "", "kube-system")),
        "",
    );
    assert_eq!(d.level, Level::Request);
    assert_eq!(
        decide(
            &p,
            "carol",
            none,
            "get",
            Some(res("", "pods", "", "kube-system")),
            ""
        )
        .level,
        Level::Metadata
    );
}

#[test]
fn resource_forms_groups_and_names() {
    let p = Policy::from_json(POLICY.as_bytes()).unwrap();
    let g: &[String] = &[];
    let level = |r| decide(&p, "u", g, "get", Some(r), "").level;
    assert_eq!(
        level(res("apps", "deployments", "scale", "x")),
        Level::Metadata,
        "*/scale"
    );
    assert_eq!(
        level(res("", "configmaps", "status", "x")),
        Level::Request,
        "configmaps/*"
    );
    // `configmaps/*` also matches plain configmaps, as in kube-apiserver.
    assert_eq!(level(res("", "configmaps", "", "x")), Level::Request);
    let secret = |name| ResourceAttributes {
        name,
        ..res("", "secrets", "", "x")
    };
    // The `db` secret hits the resourceNames rule; others fall through to
    // the catch-all — both Metadata, but through different rules:
    let d = decide(&p, "u", g, "get", Some(secret("db")), "");
    assert_eq!(d.omit_stages, [Stage::RequestReceived]);
    let d = decide(&p, "u", g, "get", Some(secret("other")), "");
    assert_eq!(
        d.omit_stages,
        [Stage::RequestReceived, Stage::ResponseComplete]
    );
    // pods/exec in another group is not core pods/exec.
    assert_eq!(
        level(res("example.io", "pods", "exec", "x")),
        Level::Metadata
    );
}

#[test]
fn non_resource_urls_match_only_non_resource_requests() {
    let p = Policy::from_json(POLICY.as_bytes()).unwrap();
    let g: &[String] = &[];
    assert_eq!(
        decide(&p, "u", g, "get", None, "/healthz/etcd").level,
        Level::None
    );
    assert_eq!(
        decide(&p, "u", g, "get", None, "/version").level,
        Level::None
    );
    assert_eq!(
        decide(&p, "u", g, "get", None, "/versions").level,
        Level::Metadata
    );
}

#[test]
fn level_none_emits_nothing_and_no_match_is_none() {
    let p = Policy {
        rules: vec![PolicyRule {
            verbs: vec!["create".into()],
            ..PolicyRule::level(Level::Metadata)
        }],
        ..Policy::default()
    };
    let d = decide(&p, "u", &[], "get", None, "/api");
    assert_eq!(d.level, Level::None);
    for stage in [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
    ] {
        assert!(
            !d.emits(stage),
            "level None is the policy's choice, not a drop"
        );
    }
    // Without a policy file: everything at Metadata.
    assert_eq!(
        decide(&Policy::default(), "u", &[], "get", None, "/api").level,
        Level::Metadata
    );
}

#[test]
fn attributes_come_from_an_event() {
    let p = Policy::from_json(POLICY.as_bytes()).unwrap();
    let mut e = ev(1);
    e.object_ref = Some(ObjectReference {
        resource: "pods".into(),
        subresource: "exec".into(),
        namespace: "default".into(),
        name: "web".into(),
        ..ObjectReference::default()
    });
    assert_eq!(
        p.evaluate(&Attributes::of_event(&e)).level,
        Level::RequestResponse
    );
    e.object_ref = None;
    e.request_uri = "/healthz?verbose=1".into();
    assert_eq!(Attributes::of_event(&e).path, "/healthz");
    assert_eq!(p.evaluate(&Attributes::of_event(&e)).level, Level::None);
}

#[test]
fn bad_policies_are_rejected_with_a_reason() {
    assert!(matches!(
        Policy::from_json(br#"{"apiVersion":"v1","kind":"Policy"}"#),
        Err(PolicyError::ApiVersion(_))
    ));
    assert!(matches!(
        Policy::from_json(br#"{"kind":"ConfigMap"}"#),
        Err(PolicyError::Kind(_))
    ));
    assert!(matches!(
        Policy::from_json(br#"{"rules":[{"level":"Everything"}]}"#),
        Err(PolicyError::Syntax(_))
    ));
    assert!(Policy::from_json(br#"{"apiVersion":"audit.k8s.io/v1beta1","rules":[]}"#).is_ok());
}
