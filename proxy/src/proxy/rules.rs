//! Recording rules: who is recorded where (`--config FILE`, YAML).
//!
//! ```yaml
//! cluster: prod-eu-1                 # the cast header's cluster name
//! recorderTokenFile: /etc/kubecast/recorder-token   # bearer token for the recorders
//! recorderCA: /etc/kubecast/recorder-ca.crt         # PEM CA for https:// recorders
//! default:                           # what applies when no rule matches
//!   recorders: [recorder-0.kubecast:8080, recorder-1.kubecast:8080]
//!   enforce: true
//! rules:                             # first match wins
//! - namespaces: [kube-system]
//!   pods: ["coredns-*"]
//!   record: false
//! - groups: [contractors]
//!   enforce: true
//!   recordStdin: true
//! ```
//!
//! A rule matches when every field it gives matches (`users`, `groups`,
//! `namespaces`, `pods`; a field matches when any of its globs does — `*`
//! any run of characters, `?` one character — and `groups` when any of the
//! caller's groups does). A caller the proxy does not know (`--auth noauth`)
//! matches no `users` or `groups` pattern. Its action fields (`record`,
//! `recorders`, `enforce`, `recordStdin`) default to the `default`
//! section's; `default` itself defaults to: record, to `--recordings-dir`
//! (no recorders), fail-open, no stdin. The flags override the `default`
//! section: `--recorder` replaces its recorders, `--enforce-recording` sets
//! its `enforce`. Without `--config`, the flags are the only rule.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What one session gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub record: bool,
    /// Empty: the local recordings directory.
    pub recorders: Vec<String>,
    pub enforce: bool,
    pub record_stdin: bool,
    /// Which rule decided (`None`: the default).
    pub rule: Option<usize>,
}

/// Who and where, for matching.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `None`: unknown (noauth).
    pub user: Option<&'a str>,
    pub groups: &'a [String],
    pub namespace: &'a str,
    pub pod: &'a str,
}

/// The rules, validated.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub cluster: Option<String>,
    pub recorder_token_file: Option<PathBuf>,
    pub recorder_ca: Option<PathBuf>,
    default: Action,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    cluster: Option<String>,
    recorder_token_file: Option<PathBuf>,
    #[serde(rename = "recorderCA")]
    recorder_ca: Option<PathBuf>,
    #[serde(default)]
    default: Partial,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Partial {
    record: Option<bool>,
    recorders: Option<Vec<String>>,
    enforce: Option<bool>,
    record_stdin: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleFile {
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    namespaces: Option<Vec<String>>,
    pods: Option<Vec<String>>,
    record: Option<bool>,
    recorders: Option<Vec<String>>,
    enforce: Option<bool>,
    record_stdin: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    record: bool,
    recorders: Vec<String>,
    enforce: bool,
    record_stdin: bool,
}

impl Default for Action {
    fn default() -> Self {
        Action {
            record: true,
            recorders: Vec::new(),
            enforce: false,
            record_stdin: false,
        }
    }
}

impl Action {
    fn with(&self, p: &Partial) -> Action {
        Action {
            record: p.record.unwrap_or(self.record),
            recorders: p
                .recorders
                .clone()
                .unwrap_or_else(|| self.recorders.clone()),
            enforce: p.enforce.unwrap_or(self.enforce),
            record_stdin: p.record_stdin.unwrap_or(self.record_stdin),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    namespaces: Option<Vec<String>>,
    pods: Option<Vec<String>>,
    action: Action,
}

/// The flags that make or override the default rule.
#[derive(Debug, Clone, Default)]
pub struct Flags<'a> {
    pub recorders: &'a [String],
    pub enforce: bool,
}

impl Rules {
    /// The default rule from the flags alone (no `--config`).
    pub fn from_flags(flags: &Flags<'_>) -> Rules {
        let mut rules = Rules::default();
        rules.default.recorders = flags.recorders.to_vec();
        rules.default.enforce = flags.enforce;
        rules
    }

    /// Parses and validates a rules file; `check_recorder` validates each
    /// recorder address. Errors name the file and what is wrong.
    pub fn parse(
        text: &str,
        flags: &Flags<'_>,
        check_recorder: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Rules, String> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        let mut default = Action::default().with(&file.default);
        if !flags.recorders.is_empty() {
            default.recorders = flags.recorders.to_vec();
        }
        default.enforce |= flags.enforce;
        let check = |recorders: &[String], what: &str| -> Result<(), String> {
            recorders
                .iter()
                .try_for_each(|r| check_recorder(r).map_err(|e| format!("{what}: recorder {e}")))
        };
        check(&default.recorders, "default")?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let what = format!("rules[{i}]");
            for (name, globs) in [
                ("users", &r.users),
                ("groups", &r.groups),
                ("namespaces", &r.namespaces),
                ("pods", &r.pods),
            ] {
                if globs.as_ref().is_some_and(|g| g.is_empty()) {
                    return Err(format!("{what}: {name} is empty (it would match nothing; leave it out to match anything)"));
                }
            }
            let partial = Partial {
                record: r.record,
                recorders: r.recorders,
                enforce: r.enforce,
                record_stdin: r.record_stdin,
            };
            let action = default.with(&partial);
            check(&action.recorders, &what)?;
            if !action.record && partial.enforce == Some(true) {
                return Err(format!("{what}: record: false with enforce: true"));
            }
            rules.push(Rule {
                users: r.users,
                groups: r.groups,
                namespaces: r.namespaces,
                pods: r.pods,
                action,
            });
        }
        Ok(Rules {
            cluster: file.cluster,
            recorder_token_file: file.recorder_token_file,
            recorder_ca: file.recorder_ca,
            default,
            rules,
        })
    }

    /// Reads and parses `path`.
    pub fn read(
        path: &Path,
        flags: &Flags<'_>,
        check_recorder: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Rules, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        Rules::parse(&text, flags, check_recorder)
            .map_err(|e| format!("--config {}: {e}", path.display()))
    }

    /// The first matching rule's action, else the default.
    pub fn decide(&self, who: &Subject<'_>) -> Decision {
        let (rule, action) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(who))
            .map_or((None, &self.default), |(i, r)| (Some(i), &r.action));
        Decision {
            record: action.record,
            recorders: action.recorders.clone(),
            enforce: action.enforce,
            record_stdin: action.record_stdin,
            rule,
        }
    }

    /// Every recorder some rule may use (for the startup log).
    pub fn describe(&self) -> String {
        let d = &self.default;
        format!(
            "{} rule(s); default: record={} recorders={:?} enforce={} recordStdin={}",
            self.rules.len(),
            d.record,
            d.recorders,
            d.enforce,
            d.record_stdin
        )
    }
}

impl Rule {
    fn matches(&self, who: &Subject<'_>) -> bool {
        let any = |globs: &Option<Vec<String>>, value: Option<&str>| match globs {
            None => true,
            Some(globs) => value.is_some_and(|v| globs.iter().any(|g| glob(g, v))),
        };
        let groups_ok = match &self.groups {
            None => true,
            Some(globs) => {
                who.user.is_some()
                    && who
                        .groups
                        .iter()
                        .any(|group| globs.iter().any(|g| glob(g, group)))
            }
        };
        any(&self.users, who.user)
            && groups_ok
            && any(&self.namespaces, Some(who.namespace))
            && any(&self.pods, Some(who.pod))
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; every
/// other character itself. Iterative with one backtrack point: linear-ish,
/// no recursion.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &str) -> Result<(), String> {
        Ok(())
    }

    fn who<'a>(
        user: Option<&'a str>,
        groups: &'a [String],
        ns: &'a str,
        pod: &'a str,
    ) -> Subject<'a> {
        Subject {
            user,
            groups,
            namespace: ns,
            pod,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("kube-*", "kube-system"));
        assert!(!glob("kube-*", "default"));
        assert!(glob("web-?", "web-0"));
        assert!(!glob("web-?", "web-10"));
        assert!(glob("*a*b*c", "xxaybbzc"));
        assert!(!glob("*a*b*c", "xxaybbzcd"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("a**", "a"));
        assert!(glob("é?", "éü"));
    }

    #[test]
    fn first_match_wins_and_fields_inherit_the_default() {
        let text = r#"
cluster: prod
default: {recorders: ["r0:8080"], enforce: true}
rules:
- namespaces: ["kube-*"]
  record: false
- groups: [contractors]
  recordStdin: true
  recorders: ["r1:8080"]
- users: [alice]
  enforce: false
"#;
        let rules = Rules::parse(text, &Flags::default(), ok).unwrap();
        assert_eq!(rules.cluster.as_deref(), Some("prod"));
        let none: Vec<String> = vec![];
        let contractors = vec!["dev".to_string(), "contractors".to_string()];
        let d = rules.decide(&who(Some("alice"), &contractors, "kube-system", "coredns"));
        assert_eq!((d.record, d.rule), (false, Some(0)));
        let d = rules.decide(&who(Some("alice"), &contractors, "default", "web"));
        assert_eq!(
            (d.record, d.record_stdin, d.enforce, d.recorders, d.rule),
            (true, true, true, vec!["r1:8080".to_string()], Some(1))
        );
        let d = rules.decide(&who(Some("alice"), &none, "default", "web"));
        assert_eq!((d.enforce, d.recorders.len(), d.rule), (false, 1, Some(2)));
        let d = rules.decide(&who(Some("bob"), &none, "default", "web"));
        assert_eq!((d.record, d.enforce, d.rule), (true, true, None));
        // An unknown caller matches no users/groups pattern.
        let d = rules.decide(&who(None, &contractors, "default", "web"));
        assert_eq!(d.rule, None);
    }

    #[test]
    fn flags_override_the_default() {
        let text = "default: {recorders: [\"r0:1\"]}\n";
        let recorders = vec!["flag:1".to_string()];
        let flags = Flags {
            recorders: &recorders,
            enforce: true,
        };
        let rules = Rules::parse(text, &flags, ok).unwrap();
        let d = rules.decide(&who(None, &[], "a", "b"));
        assert_eq!((d.recorders, d.enforce), (recorders.clone(), true));
        let rules = Rules::from_flags(&Flags::default());
        let d = rules.decide(&who(None, &[], "a", "b"));
        assert_eq!((d.record, d.recorders.len(), d.enforce), (true, 0, false));
        assert!(Rules::parse("", &Flags::default(), ok).is_ok());
    }

    #[test]
    fn invalid_files_are_refused_clearly() {
        let err = |t: &str| {
            Rules::parse(t, &Flags::default(), |r| {
                if r.contains(' ') {
                    Err(format!("{r:?}: bad"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err()
        };
        assert!(err("rules: [{namespace: [x]}]").contains("unknown field `namespace`"));
        assert!(err("rules: [{pods: []}]").contains("rules[0]: pods is empty"));
        assert!(err("rules: [{record: maybe}]").contains("record"));
        assert!(err("rules: [{recorders: [\"a b\"]}]").contains("rules[0]: recorder"));
        assert!(err("rules: [{record: false, enforce: true}]").contains("enforce"));
        assert!(err("- just a list").contains("invalid type"));
    }
}
