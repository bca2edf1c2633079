//! The proxy's identity: it may read the EndpointSlices of its namespace, nothing else.

use k8s_openapi::api::{
    core::v1::ServiceAccount,
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};

use super::{Component, metadata};
use crate::{
    kinds::Owned,
    reconcile::{names::Names, validate::Plan},
};

/// What the proxies' Role grants. The operator must hold these itself to grant them (RBAC
/// refuses to let anyone grant more than they have), so its own RBAC includes them.
pub fn proxy_rules() -> Vec<PolicyRule> {
    vec![PolicyRule {
        api_groups: Some(vec!["discovery.k8s.io".into()]),
        resources: Some(vec!["endpointslices".into()]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..Default::default()
    }]
}

pub fn proxy_identity(plan: &Plan, names: &Names) -> [Owned; 3] {
    let account = ServiceAccount {
        metadata: metadata(plan, names.proxy(), Some(Component::Proxy)),
        ..Default::default()
    };
    let role = Role {
        metadata: metadata(plan, names.proxy(), Some(Component::Proxy)),
        rules: Some(proxy_rules()),
    };
    let binding = RoleBinding {
        metadata: metadata(plan, names.proxy(), Some(Component::Proxy)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names.proxy(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.proxy(),
            namespace: Some(plan.namespace.clone()),
            api_group: None,
        }]),
    };
    [account.into(), role.into(), binding.into()]
}
