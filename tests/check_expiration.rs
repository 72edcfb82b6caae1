//! `kubepki certs check-expiration` against a PKI written by a real kubeadm v1.20.2 and its own
//! `check-expiration` output, and on PKIs kubepki made.

mod common;

use std::fs;

use common::pki::{IP, NODE, kubepki_in};
use common::*;

/// kubeadm ran its check-expiration within a day of creating the fixture (364d / 9y left).
const FIXTURE_NOW: &str = "2026-11-22T18:00:00Z";

fn check(args: &[&str]) -> std::process::Output {
    run_ok(kubepki_in(&fixture_dir(), &["certs", "check-expiration"]).args(args))
}

#[test]
fn same_rows_dates_and_residual_times_as_kubeadm() {
    let theirs = fs::read_to_string(fixture_dir().join("check-expiration.txt")).unwrap();
    let ours = stdout(&check(&["--now", FIXTURE_NOW]));
    // The only documented difference: kubeadm 1.20 left the CA column of kubeconfig rows
    // blank; current kubeadm prints "ca". Blank ours there; every other byte must match.
    let col = theirs.find("CERTIFICATE AUTHORITY").unwrap();
    let mut conf_rows = 0;
    let normalized: String = ours
        .split_inclusive('\n')
        .map(|l| {
            if l.split(' ').next().is_some_and(|n| n.ends_with(".conf")) {
                conf_rows += 1;
                assert_eq!(&l[col..col + 4], "ca  ", "{l}");
                format!("{}  {}", &l[..col], &l[col + 2..])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(
        conf_rows, 3,
        "admin, controller-manager, scheduler (no super-admin before 1.29)"
    );
    assert_eq!(normalized, theirs);
}

#[test]
fn with_the_fixture_config_too() {
    let cfg = fixture_dir().join("kubeadm.yaml");
    let a = stdout(&check(&["--now", FIXTURE_NOW]));
    let b = stdout(&check(&[
        "--now",
        FIXTURE_NOW,
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert_eq!(a, b);
}

#[test]
fn json_and_yaml_are_kubeadm_output_objects() {
    let out = stdout(&check(&["--now", FIXTURE_NOW, "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "CertificateExpirationInfo");
    assert_eq!(v["apiVersion"], "output.kubeadm.k8s.io/v1alpha3");
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 10);
    let apiserver = certs.iter().find(|c| c["name"] == "apiserver").unwrap();
    assert_eq!(apiserver["expirationDate"], "2027-11-22T16:10:15Z");
    assert_eq!(apiserver["caName"], "ca");
    assert_eq!(apiserver["externallyManaged"], false);
    assert_eq!(apiserver["missing"], false);
    // 2027-11-22T16:10:15Z - 2026-11-22T18:00:00Z
    assert_eq!(
        apiserver["residualTime"],
        365 * 86400 - (3600 + 49 * 60 + 45)
    );
    let cas = v["certificateAuthorities"].as_array().unwrap();
    assert_eq!(
        cas.iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ca", "etcd-ca", "front-proxy-ca"]
    );
    assert!(
        cas.iter().all(|c| c.get("caName").is_none()),
        "caName is omitted for CAs"
    );
    // Go's json.MarshalIndent with four spaces.
    assert!(
        out.starts_with("{\n    \"kind\": \"CertificateExpirationInfo\",\n    \"apiVersion\""),
        "{out}"
    );

    let yaml = stdout(&check(&["--now", FIXTURE_NOW, "-o", "yaml"]));
    assert!(yaml.starts_with("apiVersion: output.kubeadm.k8s.io/v1alpha3\ncertificateAuthorities:\n- expirationDate: \"2036-11-19T16:10:15Z\"\n"), "{yaml}");
    assert!(
        yaml.ends_with("kind: CertificateExpirationInfo\n"),
        "{yaml}"
    );
}

#[test]
fn residual_time_follows_the_clock() {
    let at = |now: &str| stdout(&check(&["--now", now]));
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_string()
    };
    // 6 h 30 min before the leaves expire.
    let soon = at("2027-11-22T09:40:15Z");
    assert!(line(&soon, "apiserver").contains("   6h30m   "), "{soon}");
    let gone = at("2027-11-23T00:00:00Z");
    assert!(
        line(&gone, "apiserver").contains("   <invalid>   "),
        "{gone}"
    );
    assert!(line(&gone, "ca").contains("   8y"), "{gone}");
}

/// kubeadm computes the residual time from the current instant with sub-second precision and
/// truncates it to whole seconds: one nanosecond after a 1-year leaf was issued, 364d are left
/// (31535999 s), not 365d. So `check-expiration` right after `init` prints 364d, as kubeadm
/// does for the same files at the same moment.
#[test]
fn residual_time_matches_kubeadm_at_the_second_boundary() {
    let dir = scratch();
    let d = dir.path();
    init_ecdsa(d, NODE, IP, &["--now", "2026-01-01T00:00:00Z"]);
    let at = |now: &str, fmt: &str| {
        stdout(&run_ok(
            kubepki_in(d, &["certs", "check-expiration", "-o", fmt]).args(["--now", now]),
        ))
    };
    let residual = |json: &str, name: &str| -> i64 {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["certificateAuthorities"].as_array().unwrap())
            .find(|c| c["name"] == name)
            .unwrap()["residualTime"]
            .as_i64()
            .unwrap()
    };
    let row = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .split_whitespace()
            .nth(6)
            .unwrap()
            .to_string()
    };
    // Exactly at the instant of issue: a whole year, and ten for the CA.
    let exact = "2026-01-01T00:00:00Z";
    assert_eq!(residual(&at(exact, "json"), "apiserver"), 365 * 86400);
    assert_eq!(row(&at(exact, "text"), "apiserver"), "365d");
    assert_eq!(row(&at(exact, "text"), "ca"), "10y");
    // Any fraction of a second later: kubeadm's 364d and 9y.
    for later in ["2026-01-01T00:00:00.000000001Z", "2026-01-01T00:00:00.5Z"] {
        assert_eq!(residual(&at(later, "json"), "apiserver"), 365 * 86400 - 1);
        assert_eq!(row(&at(later, "text"), "apiserver"), "364d", "{later}");
        assert_eq!(row(&at(later, "text"), "ca"), "9y", "{later}");
    }
    // And with the real clock, right after a real-time init.
    let now_dir = scratch();
    init_ecdsa(now_dir.path(), NODE, IP, &[]);
    let out = stdout(&run_ok(&mut kubepki_in(
        now_dir.path(),
        &["certs", "check-expiration"],
    )));
    assert_eq!(row(&out, "apiserver"), "364d", "{out}");
}

#[test]
fn missing_files_are_listed_and_external_cas_detected() {
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    fs::remove_file(d.join("pki/front-proxy-client.crt")).unwrap();
    fs::remove_file(d.join("scheduler.conf")).unwrap();
    fs::remove_file(d.join("pki/etcd/ca.crt")).unwrap();
    fs::remove_file(d.join("pki/ca.key")).unwrap();
    let out = stdout(&run_ok(&mut kubepki_in(d, &["certs", "check-expiration"])));
    for missing in [
        "!MISSING! front-proxy-client",
        "!MISSING! scheduler.conf",
        "!MISSING! etcd-ca",
    ] {
        assert!(
            out.lines().any(|l| l.trim_end() == missing),
            "{missing}:\n{out}"
        );
    }
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("apiserver").ends_with("ca                      yes     "),
        "{out}"
    );
    assert!(row("admin.conf").ends_with("yes     "), "{out}");
    assert!(
        row("etcd-server").ends_with("etcd-ca                 no      "),
        "{out}"
    );
    assert!(row("ca").ends_with("yes     "), "{out}");
    assert!(row("front-proxy-ca").ends_with("no      "), "{out}");
    // Just issued: 8760 h left, or a second less.
    let sa = row("super-admin.conf");
    assert!(
        sa.contains("   365d   ") || sa.contains("   364d   "),
        "{out}"
    );
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let dir = fresh_pki(NODE, IP, &[]);
    let d = dir.path();
    fs::write(
        d.join("pki/apiserver.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut c = kubepki_in(d, &["certs", "check-expiration"]);
    let out = run_fail(&mut c);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}: invalid certificate",
            d.join("pki/apiserver.crt").display()
        )),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "no partial table on error");

    // admin.conf is read first; a kubeconfig that is not YAML is named too.
    fs::write(
        d.join("admin.conf"),
        "apiVersion: v1\nkind: Config\nusers: [}\n",
    )
    .unwrap();
    let out = run_fail(&mut c);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}: not a valid kubeconfig",
            d.join("admin.conf").display()
        )),
        "{err}"
    );
}
