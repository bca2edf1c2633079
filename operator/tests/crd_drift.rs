//! The committed CRD must be what the code generates.
//! Regenerate: `cargo run -p originstack-operator -- crd > crds/originclusters.originstack.dev.yaml`

#[test]
fn committed_crd_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/originclusters.originstack.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = originstack_operator::crd::crd_yaml();
    assert!(
        committed == generated,
        "{} is out of date with operator/src/crd; regenerate it with\n  cargo run -p originstack-operator -- crd > crds/originclusters.originstack.dev.yaml",
        path.display()
    );
}
