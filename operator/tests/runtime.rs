//! The operator as it runs in a cluster: the binary with two replicas on one Lease, its HTTP
//! endpoints, JSON logs and graceful shutdown; and the Lease protocol itself.

mod support;

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease};
use kube::Api;
use originstack_e2e::{ChildGuard, free_port};
use originstack_operator::{
    leader::{self, LeaseConfig, LeaseLock},
    metrics::Metrics,
};
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

fn short_lease(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        ..LeaseConfig::new(namespace, "election", identity)
    }
}

#[tokio::test]
async fn one_lease_holder_at_a_time() {
    let plane = cluster_with_crd().await;
    let namespace = plane.create_namespace("lease").await.unwrap();
    let client = plane.admin_client().await.unwrap();
    let a = LeaseLock::new(client.clone(), short_lease(&namespace, "a"));
    let b = LeaseLock::new(client.clone(), short_lease(&namespace, "b"));

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a free Lease is taken"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "a held Lease is not"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    assert!(!b.try_acquire_or_renew().await.unwrap());

    // Released: taken at once, without waiting for expiry.
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(!a.try_acquire_or_renew().await.unwrap());

    // b stops renewing: a takes over only after the lease duration, as seen on its own clock.
    let started = Instant::now();
    while !a.try_acquire_or_renew().await.unwrap() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "expired Lease not taken over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "taken over before expiry: {:?}",
        started.elapsed()
    );
    let lease = Api::<Lease>::namespaced(client, &namespace)
        .get("election")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(2));
}

#[tokio::test]
async fn concurrent_candidates_never_both_win() {
    let plane = cluster_with_crd().await;
    let namespace = plane.create_namespace("race").await.unwrap();
    let client = plane.admin_client().await.unwrap();
    let locks: Vec<Arc<LeaseLock>> = (0..6)
        .map(|i| {
            Arc::new(LeaseLock::new(
                client.clone(),
                short_lease(&namespace, &format!("c{i}")),
            ))
        })
        .collect();
    for _ in 0..5 {
        let rounds = locks.iter().map(|lock| {
            let lock = lock.clone();
            async move { lock.try_acquire_or_renew().await.unwrap() }
        });
        let winners = futures::future::join_all(rounds)
            .await
            .into_iter()
            .filter(|won| *won)
            .count();
        assert!(winners <= 1, "{winners} holders at once");
    }
    let holder = Api::<Lease>::namespaced(client, &namespace)
        .get("election")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert!(holder.is_some());
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down() {
    let plane = cluster_with_crd().await;
    let namespace = plane.create_namespace("stepdown").await.unwrap();
    let client = plane.admin_client().await.unwrap();
    let lock = Arc::new(LeaseLock::new(
        client.clone(),
        short_lease(&namespace, "leader"),
    ));
    let metrics = Arc::new(Metrics::new());
    let leadership = leader::acquire(lock, CancellationToken::new(), metrics.clone())
        .await
        .expect("leads");
    assert!(has_line(&metrics.encode(), "originstack_operator_leader 1"));
    // Another writer takes the Lease away (as an expired-lease takeover would).
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let mut lease = leases.get("election").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("usurper".into());
    leases
        .replace("election", &Default::default(), &lease)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), leadership.lost.cancelled())
        .await
        .expect("leadership lost");
    assert!(has_line(&metrics.encode(), "originstack_operator_leader 0"));
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

struct Replica {
    process: ChildGuard,
    port: u16,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(
        kubeconfig: &std::path::Path,
        namespace: &str,
        identity: &str,
        dir: &std::path::Path,
    ) -> Self {
        let port = free_port();
        let log = dir.join(format!("{identity}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_originstack-operator"));
        command
            .env("KUBECONFIG", kubeconfig)
            .env("OPERATOR_NAMESPACE", namespace)
            .env("OPERATOR_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("OPERATOR_IDENTITY", identity)
            .env("OPERATOR_LOG_FORMAT", "json")
            .env("OPERATOR_LEASE_DURATION", "10s")
            .env("OPERATOR_RENEW_DEADLINE", "6s")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        let process = ChildGuard::spawn(identity, &mut command).expect("operator binary");
        Self { process, port, log }
    }

    fn leading(&self) -> bool {
        http_get(self.port, "/metrics")
            .is_ok_and(|(_, body)| has_line(&body, "originstack_operator_leader 1"))
    }
}

#[tokio::test]
async fn two_replicas_share_one_lease_and_hand_over_on_sigterm() {
    let plane = cluster_with_crd().await;
    let namespace = plane.create_namespace("replicas").await.unwrap();
    let client = plane.admin_client().await.unwrap();
    let kubeconfig = plane.kubeconfig_path().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![
        Replica::start(&kubeconfig, &namespace, "replica-a", dir.path()),
        Replica::start(&kubeconfig, &namespace, "replica-b", dir.path()),
    ];
    for replica in &replicas {
        eventually("/readyz", || async {
            (http_get(replica.port, "/readyz").ok()?.0 == 200).then_some(())
        })
        .await;
        assert_eq!(http_get(replica.port, "/healthz").unwrap().0, 200);
    }
    let leader = eventually("one leader", || async {
        let leading: Vec<usize> = (0..2).filter(|&i| replicas[i].leading()).collect();
        (leading.len() == 1).then(|| leading[0])
    })
    .await;
    let standby = 1 - leader;

    let name = apply_example(&client, &namespace, "minimal").await;
    wait_observed(&client, &namespace, &name).await;
    let (_, metrics) = http_get(replicas[leader].port, "/metrics").unwrap();
    assert!(
        metrics.contains("originstack_operator_reconciles_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("originstack_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        !replicas[standby].leading(),
        "the standby does not reconcile"
    );

    // SIGTERM: the leader stops cleanly and releases the Lease; the standby takes over well
    // before the Lease would have expired and applies the next change.
    replicas[leader].process.signal("TERM").unwrap();
    let status = replicas[leader]
        .process
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let handed_over = Instant::now();
    eventually("the standby leads", || async {
        replicas[standby].leading().then_some(())
    })
    .await;
    assert!(
        handed_over.elapsed() < Duration::from_secs(8),
        "takeover waited for expiry: {:?}",
        handed_over.elapsed()
    );

    patch_spec(
        &client,
        &namespace,
        &name,
        json!({"origin": {"replicas": 3}}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    eventually("the new leader reconciles", || async {
        (deployments
            .get(&format!("{name}-origin"))
            .await
            .ok()?
            .spec?
            .replicas
            == Some(3))
        .then_some(())
    })
    .await;

    // Logs are JSON lines.
    let log = std::fs::read_to_string(&replicas[leader].log).unwrap();
    assert!(log.lines().count() > 2);
    for line in log.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry.get("level").is_some(), "{line}");
    }
    replicas.clear();
}

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_originstack-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, originstack_operator::crd::crd_yaml());
    let help = Command::new(env!("CARGO_BIN_EXE_originstack-operator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for variable in [
        "OPERATOR_NAMESPACE",
        "OPERATOR_LOG_FORMAT",
        "OPERATOR_HTTP_ADDR",
        "OPERATOR_LEADER_ELECTION",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}"
        );
    }
}
