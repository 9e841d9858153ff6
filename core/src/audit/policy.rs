//! The subset of kube-apiserver's audit `Policy` (`audit.k8s.io/v1`) that
//! matters to a proxy: a level per user, group, verb, resource, namespace or
//! non-resource URL, and stages to omit.
//!
//! Matching is kube-apiserver's (`k8s.io/apiserver/pkg/audit/policy/checker.go`):
//! rules are tried in order and the **first** matching rule decides; a
//! request no rule matches gets level `None`. Within a rule every non-empty
//! list must match (users: the username; userGroups: any of the groups;
//! verbs; namespaces and resources only match resource requests;
//! nonResourceURLs only match other requests). Resources match on the API
//! group and `resource`, `resource/subresource` (`pods/exec`),
//! `*`, `*/subresource` or `resource/*`, optionally narrowed by
//! `resourceNames`. `omitStages` of the policy and of the matching rule add
//! up.
//!
//! The proxy parses YAML into these same types (serde field names are the
//! Kubernetes ones); [`Policy::from_json`] is the core's own entry point.

use super::event::{Event, Level, Stage, API_VERSION};
use serde::{Deserialize, Serialize};

/// An audit policy (`kind: Policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Stages no event is emitted for, whatever the rule.
    #[serde(rename = "omitStages", default, skip_serializing_if = "Vec::is_empty")]
    pub omit_stages: Vec<Stage>,
}

/// One rule; empty lists match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    pub level: Level,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(rename = "userGroups", default, skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<GroupResources>,
    /// `""` matches cluster-scoped resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Exact paths, `*`, or prefixes ending in `*` (`/healthz*`).
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
    #[serde(rename = "omitStages", default, skip_serializing_if = "Vec::is_empty")]
    pub omit_stages: Vec<Stage>,
}

/// Resources of one API group (`""` = core).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    /// `pods`, `pods/exec`, `*`, `*/exec`, `pods/*`; empty = all of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(
        rename = "resourceNames",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
}

/// Why a policy document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("audit policy: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("audit policy: apiVersion {0:?} is not audit.k8s.io/v1 (or v1beta1)")]
    ApiVersion(String),
    #[error("audit policy: kind {0:?} is not Policy")]
    Kind(String),
}

/// What the request is, as far as the policy cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    /// `Some` for a resource request, `None` for a non-resource URL.
    pub resource: Option<ResourceAttributes<'a>>,
    /// The request path (used for non-resource requests).
    pub path: &'a str,
}

/// The resource a request addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    /// `""` for the core group.
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// `""` for cluster-scoped resources.
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Attributes<'a> {
    /// The attributes of an event already built: the authenticated user,
    /// its verb, its `objectRef` (a resource request) or else its
    /// `requestURI` path (a non-resource request).
    pub fn of_event(event: &'a Event) -> Self {
        let path = event
            .request_uri
            .split_once('?')
            .map_or(event.request_uri.as_str(), |(p, _)| p);
        Attributes {
            user: &event.user.username,
            groups: &event.user.groups,
            verb: &event.verb,
            resource: event.object_ref.as_ref().map(|o| ResourceAttributes {
                group: &o.api_group,
                resource: &o.resource,
                subresource: &o.subresource,
                namespace: &o.namespace,
                name: &o.name,
            }),
            path,
        }
    }
}

/// The policy's verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    /// Stages to leave out (policy-wide and the rule's).
    pub omit_stages: Vec<Stage>,
}

impl Decision {
    /// Whether an event for `stage` is emitted. Level `None` emits nothing:
    /// that is the policy's choice, not a drop.
    pub fn emits(&self, stage: Stage) -> bool {
        self.level != Level::None && !self.omit_stages.contains(&stage)
    }
}

impl Default for Policy {
    /// The policy without a policy file: everything at `Metadata`.
    fn default() -> Self {
        Policy {
            api_version: API_VERSION.to_string(),
            kind: "Policy".to_string(),
            rules: vec![PolicyRule::level(Level::Metadata)],
            omit_stages: Vec::new(),
        }
    }
}

impl PolicyRule {
    /// A rule matching everything at `level`.
    pub fn level(level: Level) -> Self {
        PolicyRule {
            level,
            users: Vec::new(),
            user_groups: Vec::new(),
            verbs: Vec::new(),
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_urls: Vec::new(),
            omit_stages: Vec::new(),
        }
    }
}

impl Policy {
    /// Parses a policy from JSON and checks its type meta (an empty
    /// `apiVersion`/`kind` is accepted; `audit.k8s.io/v1beta1` is read as v1,
    /// its rules being the same).
    pub fn from_json(json: &[u8]) -> Result<Self, PolicyError> {
        let policy: Policy = serde_json::from_slice(json)?;
        policy.check()?;
        Ok(policy)
    }

    /// The type-meta check [`Policy::from_json`] applies; call it after
    /// deserializing from YAML.
    pub fn check(&self) -> Result<(), PolicyError> {
        if !matches!(
            self.api_version.as_str(),
            "" | API_VERSION | "audit.k8s.io/v1beta1"
        ) {
            return Err(PolicyError::ApiVersion(self.api_version.clone()));
        }
        if !matches!(self.kind.as_str(), "" | "Policy") {
            return Err(PolicyError::Kind(self.kind.clone()));
        }
        Ok(())
    }

    /// The first matching rule's level and the stages to omit; `None` when
    /// no rule matches.
    pub fn evaluate(&self, attrs: &Attributes<'_>) -> Decision {
        match self.rules.iter().find(|r| r.matches(attrs)) {
            Some(rule) => {
                let mut omit_stages = self.omit_stages.clone();
                for s in &rule.omit_stages {
                    if !omit_stages.contains(s) {
                        omit_stages.push(*s);
                    }
                }
                Decision {
                    level: rule.level,
                    omit_stages,
                }
            }
            None => Decision {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
            },
        }
    }
}

impl PolicyRule {
    /// Whether this rule applies to `a` (kube-apiserver's `ruleMatches`).
    pub fn matches(&self, a: &Attributes<'_>) -> bool {
        if !self.users.is_empty() && !self.users.iter().any(|u| u == a.user) {
            return false;
        }
        if !self.user_groups.is_empty() && !a.groups.iter().any(|g| self.user_groups.contains(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return a.resource.is_some_and(|r| self.matches_resource(&r));
        }
        if !self.non_resource_urls.is_empty() {
            return a.resource.is_none()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(a.path, spec));
        }
        true
    }

    fn matches_resource(&self, r: &ResourceAttributes<'_>) -> bool {
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == r.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if r.subresource.is_empty() {
            r.resource.to_string()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == r.group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                if !gr.resource_names.is_empty() && !gr.resource_names.iter().any(|n| n == r.name) {
                    return false;
                }
                gr.resources.iter().any(|spec| {
                    spec == "*"
                        || *spec == combined
                        || (!r.subresource.is_empty()
                            && spec.strip_prefix("*/") == Some(r.subresource))
                        || spec.strip_suffix("/*") == Some(r.resource)
                })
            })
    }
}

/// `*`, an exact path, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}
