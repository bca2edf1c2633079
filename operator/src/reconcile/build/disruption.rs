//! PodDisruptionBudgets: a voluntary eviction (node drain) takes one origin, proxy or edge at a
//! time.

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{Component, label_selector, metadata};
use crate::reconcile::{names::Names, validate::Plan};

pub fn budgets(plan: &Plan, names: &Names) -> Vec<PodDisruptionBudget> {
    let spec = &plan.cluster.spec;
    // With a single replica a budget would either block every drain or protect nothing.
    // Autoscaled edges get one when the autoscaler may run more than one.
    let edge = spec
        .edge
        .as_ref()
        .map(|edge| (Component::Edge, names.edge(), edge.most_replicas()));
    [
        (Component::Origin, names.origin(), spec.origin.replicas),
        (Component::Proxy, names.proxy(), spec.proxy.replicas),
    ]
    .into_iter()
    .chain(edge)
    .filter(|(_, _, replicas)| *replicas > 1)
    .map(|(component, name, _)| PodDisruptionBudget {
        metadata: metadata(plan, name, Some(component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(label_selector(plan, component)),
            ..Default::default()
        }),
        ..Default::default()
    })
    .collect()
}
