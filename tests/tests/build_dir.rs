//! `scripts/build-dir.sh`, which keeps the build directory shared by every clone from handing
//! one checkout another checkout's artefacts: run on a throwaway git checkout, it sets the
//! source times to now when another checkout built last, and leaves them alone otherwise.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-dir.sh")
}

fn run(checkout: &Path, target: &Path) {
    let status = Command::new(checkout.join("scripts/build-dir.sh"))
        .arg(target)
        .status()
        .unwrap();
    assert!(status.success());
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_old(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn another_checkouts_build_makes_this_checkout_rebuild_once() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("clone");
    let target = dir.path().join("target");
    std::fs::create_dir_all(checkout.join("scripts")).unwrap();
    std::fs::copy(script(), checkout.join("scripts/build-dir.sh")).unwrap();
    let source = checkout.join("lib.rs");
    std::fs::write(&source, "pub fn f() {}\n").unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(&checkout)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);

    // Another checkout built last: this one's sources become newer than any artefact.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(".originstack-checkout"), "/elsewhere\n").unwrap();
    set_old(&source);
    let before = SystemTime::now() - Duration::from_secs(60);
    run(&checkout, &target);
    assert!(modified(&source) > before, "sources touched");
    let stamp = std::fs::read_to_string(target.join(".originstack-checkout")).unwrap();
    assert_eq!(
        stamp.trim(),
        checkout.canonicalize().unwrap().to_str().unwrap()
    );

    // The same checkout again: nothing is touched, builds stay incremental.
    set_old(&source);
    let old = modified(&source);
    run(&checkout, &target);
    assert_eq!(modified(&source), old, "sources left alone");
}
