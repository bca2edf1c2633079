//! Names of the objects the operator creates for a cluster, derived from the cluster's name
//! alone: the read stage finds the current objects by them before anything is built.

/// Longest OriginCluster name: owned Service names add up to 13 characters and must stay
/// within the 63 of a DNS label.
pub const MAX_NAME_LEN: usize = 50;

/// Names of the owned objects, derived from the OriginCluster's name.
#[derive(Debug, Clone)]
pub struct Names {
    cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
        }
    }

    /// Origin Deployment and its headless Service (whose EndpointSlices the proxies watch).
    pub fn origin(&self) -> String {
        format!("{}-origin", self.cluster)
    }
    pub fn origin_config(&self) -> String {
        format!("{}-origin-config", self.cluster)
    }
    /// Proxy Deployment, its TCP client Service, ServiceAccount, Role and RoleBinding.
    pub fn proxy(&self) -> String {
        format!("{}-proxy", self.cluster)
    }
    pub fn proxy_udp(&self) -> String {
        format!("{}-proxy-udp", self.cluster)
    }
    /// ClusterIP Service of the proxies' system API: origins heartbeat to it.
    pub fn proxy_system(&self) -> String {
        format!("{}-proxy-system", self.cluster)
    }
    /// Edge Deployment, its client Service and HorizontalPodAutoscaler.
    pub fn edge(&self) -> String {
        format!("{}-edge", self.cluster)
    }
    pub fn edge_config(&self) -> String {
        format!("{}-edge-config", self.cluster)
    }
    pub fn redis(&self) -> String {
        format!("{}-redis", self.cluster)
    }
    /// The register-token Secret the operator generates when the spec names none.
    pub fn token_secret(&self) -> String {
        format!("{}-register-token", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_of_the_longest_cluster_name_are_dns_labels() {
        let names = Names::new(&"x".repeat(MAX_NAME_LEN));
        for service in [
            names.origin(),
            names.proxy(),
            names.proxy_udp(),
            names.proxy_system(),
            names.redis(),
            names.edge(),
        ] {
            assert!(service.len() <= 63, "{service}");
        }
    }
}
