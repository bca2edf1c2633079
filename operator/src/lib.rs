//! OriginStack operator: reconciles `OriginCluster` resources into SRS origins, proxy replicas,
//! their Services, RBAC, config and (optionally) Redis.

pub mod access;
pub mod controller;
pub mod crd;
pub mod http;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod podmonitor;
pub mod reconcile;
pub mod render;
