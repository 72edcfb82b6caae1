//! What ships: the crash-safety tests' kill hook (`KUBEPKI_TEST_KILL_AFTER_OPS`) must exist only
//! in the test build of the binary, where kubepki's own dev-dependency turns on the library's
//! `test-hooks` feature; a release build (`cargo build --release`, `cargo install`) has no way
//! to make kubepki kill itself mid-swap.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The lines of `[section]` in a Cargo manifest.
fn section<'a>(toml: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("[{name}]");
    toml.lines()
        .skip_while(|l| l.trim() != head)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect()
}

#[test]
fn the_kill_hook_is_only_in_test_builds() {
    let root = read("Cargo.toml");
    let pki = read("crates/pki/Cargo.toml");
    let controller = read("crates/controller/Cargo.toml");
    // Only kubepki's dev-dependency enables the feature.
    assert!(
        section(&root, "dev-dependencies")
            .iter()
            .any(|l| l.starts_with("kubepki-pki") && l.contains("test-hooks")),
        "the test build must enable test-hooks"
    );
    for (name, toml) in [
        ("Cargo.toml", &root),
        ("crates/controller/Cargo.toml", &controller),
    ] {
        for sec in ["dependencies", "workspace.dependencies"] {
            assert!(
                !section(toml, sec).iter().any(|l| l.contains("test-hooks")),
                "{name} [{sec}] enables test-hooks: release builds would carry the kill hook"
            );
        }
    }
    let features = section(&pki, "features");
    assert!(
        features.iter().any(|l| l.starts_with("test-hooks = []"))
            && !features
                .iter()
                .any(|l| l.starts_with("default") && l.contains("test-hooks")),
        "test-hooks must exist and not be a default feature: {features:?}"
    );
    // And the hook reads its variable only behind that feature.
    let txn = read("crates/pki/src/fsio.rs");
    let at = txn
        .find("KUBEPKI_TEST_KILL_AFTER_OPS\")")
        .expect("the hook");
    let before = &txn[..at];
    let gate = before
        .rfind("#[cfg(feature = \"test-hooks\")]")
        .expect("a cfg gate");
    assert!(
        !before[gate..].contains("\n}\n"),
        "the hook is not inside the test-hooks gate"
    );
}
