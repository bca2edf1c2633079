//! The committed CRD must be what the code generates, in `crds/` and in the chart (which
//! wraps the same file in a template: charts/originstack/templates/crd.yaml).
//! Regenerate both: `make generate`.

#[test]
fn committed_crds_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = originstack_operator::crd::crd_yaml();
    for file in [
        "crds/originclusters.originstack.dev.yaml",
        "charts/originstack/files/originclusters.originstack.dev.yaml",
    ] {
        let path = root.join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with operator/src/crd; regenerate it with `make generate`\n  \
             (cargo run -p originstack-operator -- crd > {file})",
            path.display(),
        );
    }
}
