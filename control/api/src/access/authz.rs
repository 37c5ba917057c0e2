//! Who may call what: roles, principals, and the one authorization function
//! ([`authorize`]) every request goes through. Documents' namespaces are checked separately,
//! under the state's writer lock ([`Principal::may_edit`], used as a `weft_state::Guard`).

use serde::{Deserialize, Serialize};
use std::fmt;
use weft_policy::DocKey;

/// An operator's role (Kubernetes-style: viewer < editor; security-admin beside them; admin
/// above all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads documents, history, status, sidecars, graph.
    Viewer,
    /// A viewer that may apply, delete and roll back documents in its namespaces.
    Editor,
    /// A viewer that manages join tokens, the CA, operators and reads the audit log.
    SecurityAdmin,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "security-admin" => Some(Self::SecurityAdmin),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::SecurityAdmin => "security-admin",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The namespaces an editor may change (empty for the other roles).
    pub namespaces: Vec<String>,
}

impl Principal {
    /// `operator:<name>`, as history and the audit log record it.
    pub fn id(&self) -> String {
        format!("operator:{}", self.name)
    }

    /// Whether this principal may change every one of `keys`; the error names the first
    /// document it may not.
    pub fn may_edit(&self, keys: &[DocKey]) -> Result<(), String> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Editor => match keys
                .iter()
                .find(|k| !self.namespaces.contains(&k.namespace))
            {
                None => Ok(()),
                Some(key) => Err(format!(
                    "document {key}: {} (editor of {}) may not change namespace {:?}; nothing was changed",
                    self.id(),
                    self.namespaces.join(", "),
                    key.namespace
                )),
            },
            role => match keys.first() {
                None => Ok(()),
                Some(key) => Err(format!(
                    "document {key}: {} is a {role}, which may not change documents",
                    self.id()
                )),
            },
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No credential (`/healthz`).
    Open,
    /// Any role (reading documents, status, graph; validate and diff change nothing).
    Read,
    /// Editor or admin; the documents' namespaces are checked again when the change is made.
    EditDocuments,
    /// Editor of the route's `{namespace}` path parameter, or admin (commands on one
    /// namespace's objects, such as a Rollout's promote/abort/pause/resume).
    EditPathNamespace,
    /// security-admin or admin, reading (tokens, operators, audit log).
    SecurityRead,
    /// security-admin or admin, changing (join tokens, CA rotation, operators).
    SecurityWrite,
}

/// Every route (`crate::ROUTES`, method in lower case) and what it needs: the one table of
/// the access model (docs/operator-access.md shows it). A route missing here is refused to
/// everyone ([`need`] returns `None`); a test checks every route is listed.
pub const ROUTE_NEEDS: &[(&str, &str, Need)] = &[
    ("get", "/healthz", Need::Open),
    ("get", "/openapi.json", Need::Read),
    ("get", "/api/v1/status", Need::Read),
    ("post", "/api/v1/apply", Need::EditDocuments),
    ("post", "/api/v1/validate", Need::Read),
    ("post", "/api/v1/diff", Need::Read),
    ("get", "/api/v1/policies", Need::Read),
    (
        "get",
        "/api/v1/policies/{kind}/{namespace}/{name}",
        Need::Read,
    ),
    (
        "delete",
        "/api/v1/policies/{kind}/{namespace}/{name}",
        Need::EditDocuments,
    ),
    ("get", "/api/v1/history", Need::Read),
    ("get", "/api/v1/history/{version}", Need::Read),
    ("post", "/api/v1/rollback/{version}", Need::EditDocuments),
    ("get", "/api/v1/sidecars", Need::Read),
    (
        "get",
        "/api/v1/sidecars/{namespace}/{service}/{version}/config",
        Need::Read,
    ),
    ("get", "/api/v1/graph", Need::Read),
    ("get", "/api/v1/suggest/authz", Need::Read),
    ("get", "/metrics", Need::Read),
    ("get", "/ui", Need::Read),
    ("post", "/api/v1/tokens", Need::SecurityWrite),
    ("get", "/api/v1/tokens", Need::SecurityRead),
    ("delete", "/api/v1/tokens/{id}", Need::SecurityWrite),
    ("get", "/api/v1/ca", Need::Read),
    ("post", "/api/v1/ca/rotate", Need::SecurityWrite),
    ("get", "/api/v1/xds/sidecars", Need::Read),
    (
        "get",
        "/api/v1/xds/sidecars/{namespace}/{service}/{version}/resources",
        Need::Read,
    ),
    ("get", "/api/v1/replicas", Need::Read),
    ("post", "/api/v1/check", Need::Read),
    ("post", "/api/v1/check/matrix", Need::Read),
    ("post", "/api/v1/operators", Need::SecurityWrite),
    ("get", "/api/v1/operators", Need::SecurityRead),
    ("delete", "/api/v1/operators/{name}", Need::SecurityWrite),
    ("get", "/api/v1/whoami", Need::Read),
    // The caller's own certificate only (any role: renewing takes no power it lacks).
    ("post", "/api/v1/whoami/certificate", Need::Read),
    ("get", "/api/v1/audit", Need::SecurityRead),
    ("get", "/api/v1/rollouts", Need::Read),
    ("get", "/api/v1/rollouts/{namespace}/{name}", Need::Read),
    (
        "get",
        "/api/v1/rollouts/{namespace}/{name}/events",
        Need::Read,
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/promote",
        Need::EditPathNamespace,
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/abort",
        Need::EditPathNamespace,
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/pause",
        Need::EditPathNamespace,
    ),
    (
        "post",
        "/api/v1/rollouts/{namespace}/{name}/resume",
        Need::EditPathNamespace,
    ),
    // A trace shows the namespace's deciding policies: who may change them may see them.
    (
        "post",
        "/api/v1/explain/{namespace}/{service}/tokens",
        Need::EditPathNamespace,
    ),
];

/// The `{namespace}` segment of `path` matched against the route template `template`, as
/// sent (a namespace is a DNS label: an escaped segment never equals one, so it is refused).
pub fn path_namespace<'a>(template: &str, path: &'a str) -> Option<&'a str> {
    let at = template
        .split('/')
        .position(|segment| segment == "{namespace}")?;
    path.split('/').nth(at)
}

/// What `method` on the route template `path` needs; `None` for a route not in the table.
pub fn need(method: &str, path: &str) -> Option<Need> {
    ROUTE_NEEDS
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, need)| *need)
}

/// Allow or deny `principal` (none: no valid credential) on a route needing `need`; the error
/// is the reason (and the status: 401 without a principal, 403 with one).
/// `namespace` is the route's `{namespace}` path parameter (for [`Need::EditPathNamespace`]).
pub fn authorize(
    principal: Option<&Principal>,
    need: Option<Need>,
    namespace: Option<&str>,
) -> Result<(), Denied> {
    let Some(need) = need else {
        return Err(match principal {
            None => Denied::Unauthenticated,
            Some(_) => Denied::Forbidden("no such route".into()),
        });
    };
    if need == Need::Open {
        return Ok(());
    }
    let Some(principal) = principal else {
        return Err(Denied::Unauthenticated);
    };
    let allowed = match need {
        Need::Open | Need::Read => true,
        Need::EditDocuments => matches!(principal.role, Role::Editor | Role::Admin),
        Need::EditPathNamespace => match principal.role {
            Role::Admin => true,
            Role::Editor => {
                namespace.is_some_and(|ns| principal.namespaces.iter().any(|n| n == ns))
            }
            Role::Viewer | Role::SecurityAdmin => false,
        },
        Need::SecurityRead | Need::SecurityWrite => {
            matches!(principal.role, Role::SecurityAdmin | Role::Admin)
        }
    };
    if allowed {
        Ok(())
    } else {
        let what = match need {
            Need::EditDocuments => "changing documents needs the editor or admin role",
            Need::EditPathNamespace => {
                return Err(Denied::Forbidden(format!(
                    "{} ({}) may not change namespace {:?}: this needs an editor of it or an admin",
                    principal.id(),
                    principal.role,
                    namespace.unwrap_or("")
                )))
            }
            Need::SecurityRead | Need::SecurityWrite => {
                "this route needs the security-admin or admin role"
            }
            Need::Open | Need::Read => "",
        };
        Err(Denied::Forbidden(format!(
            "{} is a {}: {what}",
            principal.id(),
            principal.role
        )))
    }
}

/// Whether `creator` may create an operator with `role`: nobody grants more than they hold
/// (no escalation, as in Kubernetes RBAC): a security-admin makes viewers and
/// security-admins; editors and admins are made by an admin.
pub fn may_grant(creator: &Principal, role: Role) -> bool {
    match creator.role {
        Role::Admin => true,
        Role::SecurityAdmin => matches!(role, Role::Viewer | Role::SecurityAdmin),
        Role::Viewer | Role::Editor => false,
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no credential, or one that is unknown, expired or revoked.
    Unauthenticated,
    /// 403: authenticated, but the role does not allow it.
    Forbidden(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy::Kind;

    fn who(role: Role, namespaces: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            role,
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn every_served_route_has_exactly_one_entry() {
        for (method, path) in crate::ROUTES {
            let n = ROUTE_NEEDS
                .iter()
                .filter(|(m, p, _)| m == method && p == path)
                .count();
            assert_eq!(n, 1, "{method} {path}");
        }
        assert_eq!(ROUTE_NEEDS.len(), crate::ROUTES.len());
    }

    #[test]
    fn the_roles_by_routes_table() {
        use Need::*;
        let viewer = who(Role::Viewer, &[]);
        let editor = who(Role::Editor, &["finance"]);
        let security = who(Role::SecurityAdmin, &[]);
        let admin = who(Role::Admin, &[]);
        // (need, [none, viewer, editor, security-admin, admin]): 0 allow, 1 = 401, 3 = 403.
        let table = [
            (Open, [0, 0, 0, 0, 0]),
            (Read, [1, 0, 0, 0, 0]),
            (EditDocuments, [1, 3, 0, 3, 0]),
            (EditPathNamespace, [1, 3, 0, 3, 0]),
            (SecurityRead, [1, 3, 3, 0, 0]),
            (SecurityWrite, [1, 3, 3, 0, 0]),
        ];
        for (need, expected) in table {
            let principals = [
                None,
                Some(&viewer),
                Some(&editor),
                Some(&security),
                Some(&admin),
            ];
            for (principal, want) in principals.into_iter().zip(expected) {
                let got = match authorize(principal, Some(need), Some("finance")) {
                    Ok(()) => 0,
                    Err(Denied::Unauthenticated) => 1,
                    Err(Denied::Forbidden(_)) => 3,
                };
                assert_eq!(got, want, "{need:?} {principal:?}");
            }
        }
        // An unknown route: 401 without a credential, 403 with one; never allowed.
        // An editor of finance on another namespace's object, or on a route without one.
        for ns in [Some("shop"), Some("finance%2F"), None] {
            assert!(matches!(
                authorize(Some(&editor), Some(EditPathNamespace), ns),
                Err(Denied::Forbidden(_))
            ));
        }
        assert_eq!(
            path_namespace(
                "/api/v1/rollouts/{namespace}/{name}/abort",
                "/api/v1/rollouts/shop/r1/abort"
            ),
            Some("shop")
        );
        assert_eq!(authorize(None, None, None), Err(Denied::Unauthenticated));
        assert!(matches!(
            authorize(Some(&admin), None, None),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(need("POST", "/api/v1/apply"), Some(EditDocuments));
        assert_eq!(need("get", "/api/v1/apply"), None);
        // Explain tokens: an editor of the service's namespace (or an admin) only.
        let explain = "/api/v1/explain/{namespace}/{service}/tokens";
        assert_eq!(need("post", explain), Some(EditPathNamespace));
        assert_eq!(
            path_namespace(explain, "/api/v1/explain/finance/ledger/tokens"),
            Some("finance")
        );
        // `weft check` changes nothing: every viewer may ask.
        assert_eq!(need("POST", "/api/v1/check"), Some(Read));
        assert_eq!(need("post", "/api/v1/check/matrix"), Some(Read));
        assert_eq!(need("get", "/api/v1/check"), None);
    }

    #[test]
    fn editors_change_only_their_namespaces_and_the_refusal_names_the_document() {
        let key = |ns: &str| DocKey {
            kind: Kind::AuthorizationPolicy,
            namespace: ns.into(),
            name: "allow".into(),
        };
        let editor = who(Role::Editor, &["finance"]);
        assert_eq!(editor.may_edit(&[key("finance")]), Ok(()));
        let refused = editor.may_edit(&[key("finance"), key("shop")]);
        assert!(
            refused.as_ref().is_err_and(
                |e| e.contains("AuthorizationPolicy/shop/allow") && e.contains("\"shop\"")
            ),
            "{refused:?}"
        );
        assert!(who(Role::Viewer, &[]).may_edit(&[key("finance")]).is_err());
        assert!(who(Role::SecurityAdmin, &[])
            .may_edit(&[key("finance")])
            .is_err());
        assert_eq!(who(Role::Admin, &[]).may_edit(&[key("shop")]), Ok(()));
        assert_eq!(who(Role::Viewer, &[]).may_edit(&[]), Ok(()));
    }

    #[test]
    fn nobody_grants_more_than_they_hold() {
        let security = who(Role::SecurityAdmin, &[]);
        assert!(may_grant(&security, Role::Viewer));
        assert!(may_grant(&security, Role::SecurityAdmin));
        assert!(!may_grant(&security, Role::Editor));
        assert!(!may_grant(&security, Role::Admin));
        assert!(may_grant(&who(Role::Admin, &[]), Role::Admin));
        assert!(!may_grant(&who(Role::Editor, &["a"]), Role::Viewer));
    }
}
