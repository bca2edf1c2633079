//! The RBAC the operator needs: the verb lists of [`kinds`] as rules, one per reason.
//!
//! The Helm chart grants [`permissions`] (`originstack-operator rbac` prints
//! `charts/originstack/templates/_rules.tpl`); `operator/tests/rbac.rs` checks
//! that the rendered chart grants exactly this, and that the binary, bound to nothing but the
//! chart's rules, brings a cluster to Ready while using every one of them.

use std::collections::BTreeSet;

use crate::{
    crd::OriginCluster,
    kinds::{self, OwnedKind, ResourceId},
    reconcile::build,
};

/// Where a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Where OriginClusters are reconciled: every namespace (a ClusterRole), or the one
    /// `--namespace` names (a Role there).
    Watched,
    /// The operator's own namespace, which holds its leader Lease (always a Role).
    Lease,
}

/// Which objects of the resources a permission covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Names {
    Any,
    /// Only the leader Lease (`--lease-name`). `create` cannot be limited by name: the API
    /// server authorizes it before the object has one.
    TheLease,
}

/// One RBAC rule the operator needs, and why.
#[derive(Debug, Clone)]
pub struct Permission {
    pub scope: Scope,
    /// Resources of one API group.
    pub resources: Vec<ResourceId>,
    pub verbs: Vec<String>,
    pub names: Names,
    /// Not used by the operator itself but granted onward (to the proxies' Role).
    pub delegated: bool,
    pub why: &'static str,
}

/// One verb on one resource: the unit the tests compare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub scope: Scope,
    pub resource: ResourceId,
    pub verb: String,
    pub names: Names,
}

fn verbs(list: &[&str]) -> Vec<String> {
    list.iter().map(|verb| verb.to_string()).collect()
}

/// Everything the operator does with the API server, one rule per reason.
pub fn permissions() -> Vec<Permission> {
    let mut rules = vec![
        Permission {
            scope: Scope::Watched,
            resources: vec![ResourceId::of::<OriginCluster>()],
            verbs: verbs(kinds::CLUSTER_VERBS),
            names: Names::Any,
            delegated: false,
            why: "The controller lists and watches the OriginClusters it reconciles.",
        },
        Permission {
            scope: Scope::Watched,
            resources: vec![ResourceId::of::<OriginCluster>().subresource("status")],
            verbs: verbs(kinds::STATUS_VERBS),
            names: Names::Any,
            delegated: false,
            why: "Each reconcile writes the cluster's status (conditions, replica counts, endpoints).",
        },
    ];

    // Owned kinds, one rule per API group, in the order of the owned-kinds list.
    for (_, resources) in group_by_api(OwnedKind::ALL.iter().map(|kind| kind.resource())) {
        rules.push(Permission {
            scope: Scope::Watched,
            resources,
            verbs: verbs(kinds::OWNED_VERBS),
            names: Names::Any,
            delegated: false,
            why: "Owned objects: server-side applied (created or patched), watched to undo \
                  drift, listed and deleted when the spec no longer asks for them.",
        });
    }

    let reads = kinds::read_resources();
    let (secrets, others): (Vec<_>, Vec<_>) = reads
        .into_iter()
        .partition(|resource| resource.resource == "secrets");
    rules.push(Permission {
        scope: Scope::Watched,
        resources: secrets,
        verbs: verbs(kinds::READ_VERBS),
        names: Names::Any,
        delegated: false,
        why: "Reads the register-token and Redis-password Secrets a spec names. Users choose \
              those names, so resourceNames cannot narrow this; only Secrets the operator \
              labelled are watched (and so cached).",
    });
    for (_, resources) in group_by_api(others) {
        rules.push(Permission {
            scope: Scope::Watched,
            resources,
            verbs: verbs(kinds::READ_VERBS),
            names: Names::Any,
            delegated: false,
            why: "Reads the current Deployments and Services for the status, also when nothing \
                  is applied (paused or invalid spec).",
        });
    }
    rules.push(Permission {
        scope: Scope::Watched,
        resources: vec![kinds::event_resource()],
        verbs: verbs(kinds::EVENT_VERBS),
        names: Names::Any,
        delegated: false,
        why: "Reports failures and pruning as Events on the OriginCluster; a repeated Event is \
              patched (its series count) instead of created again.",
    });
    for rule in build::proxy_rules() {
        for group in rule.api_groups.iter().flatten() {
            rules.push(Permission {
                scope: Scope::Watched,
                resources: rule
                    .resources
                    .iter()
                    .flatten()
                    .map(|plural| ResourceId::new(group, plural))
                    .collect(),
                verbs: rule.verbs.clone(),
                names: Names::Any,
                delegated: true,
                why: "Granted to the proxies' Role (origin discovery). RBAC lets the operator \
                      grant only what it holds itself.",
            });
        }
    }
    rules.push(Permission {
        scope: Scope::Lease,
        resources: vec![kinds::lease_resource()],
        verbs: verbs(kinds::LEASE_CREATE_VERBS),
        names: Names::Any,
        delegated: false,
        why: "Leader election: the first replica creates the Lease.",
    });
    rules.push(Permission {
        scope: Scope::Lease,
        resources: vec![kinds::lease_resource()],
        verbs: verbs(kinds::LEASE_VERBS),
        names: Names::TheLease,
        delegated: false,
        why: "Leader election: replicas read the Lease; the leader renews and releases it, a \
              standby takes it over once it expires.",
    });
    rules
}

fn group_by_api(resources: impl IntoIterator<Item = ResourceId>) -> Vec<(String, Vec<ResourceId>)> {
    let mut groups: Vec<(String, Vec<ResourceId>)> = Vec::new();
    for resource in resources {
        match groups
            .iter_mut()
            .find(|(group, _)| *group == resource.group)
        {
            Some((_, list)) => list.push(resource),
            None => groups.push((resource.group.clone(), vec![resource])),
        }
    }
    groups
}

/// [`permissions`] as single grants.
pub fn grants() -> BTreeSet<Grant> {
    grants_of(permissions())
}

/// The grants the operator only passes on (see [`Permission::delegated`]).
pub fn delegated_grants() -> BTreeSet<Grant> {
    grants_of(permissions().into_iter().filter(|p| p.delegated).collect())
}

fn grants_of(permissions: Vec<Permission>) -> BTreeSet<Grant> {
    permissions
        .into_iter()
        .flat_map(|permission| {
            let Permission {
                scope,
                resources,
                verbs,
                names,
                ..
            } = permission;
            resources.into_iter().flat_map(move |resource| {
                verbs.clone().into_iter().map(move |verb| Grant {
                    scope,
                    resource: resource.clone(),
                    verb,
                    names,
                })
            })
        })
        .collect()
}

/// Path of the generated rules in the repository.
pub const HELM_RULES_PATH: &str = "charts/originstack/templates/_rules.tpl";

/// The chart's rule templates: `originstack.rules.watched` (the ClusterRole, or the Role in
/// the watched namespace) and `originstack.rules.lease` (the Role in the release namespace).
pub fn helm_rules_template() -> String {
    let mut out = String::from(
        "{{- /* Generated by `originstack-operator rbac` from operator/src/access.rs. Do not edit:\n\
         \x20    cargo run -p originstack-operator -- rbac > charts/originstack/templates/_rules.tpl */ -}}\n",
    );
    let all = permissions();
    for (scope, name) in [(Scope::Watched, "watched"), (Scope::Lease, "lease")] {
        out.push_str(&format!(
            "{{{{- define \"originstack.rules.{name}\" -}}}}\n"
        ));
        let rules: Vec<&Permission> = all.iter().filter(|p| p.scope == scope).collect();
        for (index, rule) in rules.iter().enumerate() {
            for line in wrap(rule.why, 96) {
                out.push_str(&format!("# {line}\n"));
            }
            let quoted = |items: Vec<String>| {
                items
                    .iter()
                    .map(|item| serde_json::to_string(item).expect("a string serializes"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "- apiGroups: [{}]\n",
                quoted(vec![rule.resources[0].group.clone()])
            ));
            out.push_str(&format!(
                "  resources: [{}]\n",
                quoted(rule.resources.iter().map(|r| r.resource.clone()).collect())
            ));
            out.push_str(&format!("  verbs: [{}]", quoted(rule.verbs.clone())));
            if rule.names == Names::TheLease {
                out.push_str("\n  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]");
            }
            if index + 1 < rules.len() {
                out.push('\n');
            }
        }
        out.push_str("\n{{- end }}\n");
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owned_kind_is_covered_with_every_owned_verb() {
        let grants = grants();
        for kind in OwnedKind::ALL {
            for verb in kinds::OWNED_VERBS {
                assert!(
                    grants.iter().any(|g| g.scope == Scope::Watched
                        && g.resource == kind.resource()
                        && g.verb == *verb),
                    "{} {verb}",
                    kind.as_str()
                );
            }
        }
    }

    #[test]
    fn the_lease_is_the_only_thing_outside_the_watched_namespaces() {
        for grant in grants() {
            assert_eq!(
                grant.scope == Scope::Lease,
                grant.resource.resource == "leases",
                "{grant:?}"
            );
        }
    }

    #[test]
    fn the_template_names_every_rule_with_its_reason() {
        let template = helm_rules_template();
        for permission in permissions() {
            assert!(
                template.contains(&wrap(permission.why, 96)[0]),
                "{}",
                permission.why
            );
        }
        assert!(!template.contains("\n\n"), "{template}");
    }
}
