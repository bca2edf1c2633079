//! `make cluster-up` / `make cluster-down`: the test suite's one-node Kubernetes, by hand.
//!
//!   originstack-cluster up [DIR] [NAMESPACE]   cluster, chart, examples/minimal.yaml Ready;
//!                                              writes DIR/env (default DIR: target/cluster)
//!   originstack-cluster down [DIR]             removes it all
//!
//! See docs/local-cluster.md.

use std::path::PathBuf;

use originstack_e2e::cluster::Cluster;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("target/cluster"));
    match args.first().map(String::as_str) {
        Some("up") => Cluster::up_by_hand(&dir, args.get(2).map(String::as_str).unwrap_or("demo")),
        Some("down") => Cluster::down_by_hand(&dir),
        _ => {
            eprintln!("usage: originstack-cluster up [DIR] [NAMESPACE] | down [DIR]");
            std::process::exit(2);
        }
    }
}
