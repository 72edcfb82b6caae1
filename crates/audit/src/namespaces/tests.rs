//! The namespace checks' tables: labels alone, then pods against every control, grouping,
//! severity by the level the namespace enforces, and the order and shape of what is fed.

use serde_json::{Value, json};

use super::*;
use crate::testing::{Want, assert_found, k8s, restricted_pod, summary};
use Severity::{Error, Info, Warning};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const WARN: &str = "pod-security.kubernetes.io/warn";
const AUDIT: &str = "pod-security.kubernetes.io/audit";

fn ns(name: &str, labels: Value) -> Namespace {
    k8s(json!({"metadata": {"name": name, "labels": labels}}))
}

/// Every mode at `level`: no label finding.
fn all_modes(level: &str) -> Value {
    json!({ENFORCE: level, WARN: level, AUDIT: level})
}

fn pod_with(namespace: &str, name: &str, spec: Value, phase: &str) -> Pod {
    k8s(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
        "status": {"phase": phase},
    }))
}

fn running(namespace: &str, name: &str, spec: Value) -> Pod {
    pod_with(namespace, name, spec, "Running")
}

/// The pod, controlled by `kind` `owner`.
fn owned(mut pod: Pod, kind: &str, owner: &str) -> Pod {
    pod.metadata.owner_references = Some(vec![k8s(json!({
        "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u", "controller": true,
    }))]);
    pod
}

/// The restricted spec changed so that it violates `control` and nothing else. A control
/// without a case fails the per-control test: a new control cannot be forgotten.
fn violating(control: &str) -> Option<Value> {
    let mut s = restricted_pod();
    let c = &mut s["containers"][0];
    match control {
        "appArmorProfile" => {
            s["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"})
        }
        "capabilities_baseline" => {
            c["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }
        "hostNamespaces" => s["hostPID"] = json!(true),
        "hostPathVolumes" => s["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}]),
        "hostPorts" => c["ports"] = json!([{"containerPort": 80, "hostPort": 80}]),
        "hostProbesAndHostLifecycle" => {
            c["livenessProbe"] = json!({"httpGet": {"port": 80, "host": "example.com"}})
        }
        "privileged" => c["securityContext"]["privileged"] = json!(true),
        "procMount" => c["securityContext"]["procMount"] = json!("Unmasked"),
        "seLinuxOptions" => s["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"}),
        "seccompProfile_baseline" => {
            s["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
        }
        "sysctls" => {
            s["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}])
        }
        "windowsHostProcess" => {
            s["securityContext"]["windowsOptions"] = json!({"hostProcess": true})
        }
        "allowPrivilegeEscalation" => {
            c["securityContext"]["allowPrivilegeEscalation"] = json!(true)
        }
        "capabilities_restricted" => c["securityContext"]["capabilities"]["add"] = json!(["CHOWN"]),
        "procMount_restricted" => {
            c["securityContext"]["procMount"] = json!("Unmasked");
            s["hostUsers"] = json!(false);
        }
        "restrictedVolumes" => {
            s["volumes"] = json!([{"name": "n", "nfs": {"server": "nfs", "path": "/"}}])
        }
        "runAsNonRoot" => s["securityContext"]["runAsNonRoot"] = json!(false),
        "runAsUser" => s["securityContext"]["runAsUser"] = json!(0),
        "seccompProfile_restricted" => {
            s["securityContext"]
                .as_object_mut()?
                .remove("seccompProfile");
        }
        _ => return None,
    }
    Some(s)
}

/// Asserts exactly `want`, in order, each finding with a message, a fix and a page.
fn check(case: &str, findings: &[Finding], want: Want) {
    assert_found(case, findings, want, "");
}

fn find<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no {id} in {findings:#?}"))
}

#[test]
fn namespace_labels() {
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "no labels",
            json!({}),
            &[("PSS-NAMESPACE-UNLABELLED", Warning, "namespace n")],
        ),
        ("every mode restricted", all_modes("restricted"), &[]),
        (
            "warn and audit stricter than enforce",
            json!({ENFORCE: "baseline", WARN: "restricted", AUDIT: "restricted"}),
            &[],
        ),
        (
            "warn and audit only",
            json!({WARN: "restricted", AUDIT: "restricted"}),
            &[("PSS-NAMESPACE-UNLABELLED", Warning, "namespace n")],
        ),
        (
            "enforce alone: warn defaults to it, audit does not",
            json!({ENFORCE: "restricted"}),
            &[("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n")],
        ),
        (
            "enforce and audit, no warn: warn defaults to enforce",
            json!({ENFORCE: "baseline", AUDIT: "baseline"}),
            &[],
        ),
        (
            "audit less strict than enforce",
            json!({ENFORCE: "restricted", WARN: "restricted", AUDIT: "baseline"}),
            &[("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n")],
        ),
        (
            "invalid enforce: warn is not defaulted to it",
            json!({ENFORCE: "strict", AUDIT: "restricted"}),
            &[
                ("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n"),
                ("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n"),
            ],
        ),
        (
            "warn less strict than enforce",
            json!({ENFORCE: "restricted", WARN: "baseline", AUDIT: "restricted"}),
            &[("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n")],
        ),
        (
            "enforce privileged, needed by no pod",
            all_modes("privileged"),
            &[("PSS-NAMESPACE-PRIVILEGED", Warning, "namespace n")],
        ),
        (
            "enforce privileged without warn and audit: PRIVILEGED says which to set",
            json!({ENFORCE: "privileged"}),
            &[("PSS-NAMESPACE-PRIVILEGED", Warning, "namespace n")],
        ),
        (
            "level spelled wrong: evaluated restricted",
            json!({ENFORCE: "Restricted", WARN: "restricted", AUDIT: "restricted"}),
            &[("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n")],
        ),
        (
            "empty enforce value",
            json!({ENFORCE: "", WARN: "restricted", AUDIT: "restricted"}),
            &[("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n")],
        ),
        (
            "invalid warn fails open, so warn is less strict than enforce",
            json!({ENFORCE: "baseline", WARN: "strict", AUDIT: "baseline"}),
            &[
                ("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n"),
                ("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n"),
            ],
        ),
        (
            "version with a leading zero",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/enforce-version": "v1.025"}),
            &[("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n")],
        ),
        (
            "version overflowing the plugin's int",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/enforce-version": "v1.99999999999999999999"}),
            &[("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n")],
        ),
        (
            "version beyond u32 yet within the plugin's int",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/enforce-version": "v1.9223372036854775807"}),
            &[],
        ),
        (
            "version without v",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/warn-version": "1.30"}),
            &[("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n")],
        ),
        (
            "a key the plugin does not read",
            json!({"pod-security.kubernetes.io/enforced": "restricted"}),
            &[
                ("PSS-NAMESPACE-UNLABELLED", Warning, "namespace n"),
                ("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n"),
            ],
        ),
        (
            "pinned older than the cluster",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/enforce-version": "v1.25",
                   "pod-security.kubernetes.io/audit-version": "v1.29"}),
            &[("PSS-NAMESPACE-VERSION-PINNED", Info, "namespace n")],
        ),
        (
            "pinned to the cluster's version, latest or a newer one",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                   "pod-security.kubernetes.io/enforce-version": "v1.30",
                   "pod-security.kubernetes.io/warn-version": "latest",
                   "pod-security.kubernetes.io/audit-version": "v1.31"}),
            &[],
        ),
    ];
    for (case, labels, want) in cases {
        let findings = namespaces(&[ns("n", labels)], &[], Some(30));
        check(case, &findings, want);
    }
}

#[test]
fn label_messages_say_what_the_plugin_does() {
    let f = namespaces(
        &[ns(
            "n",
            json!({ENFORCE: "strict", WARN: "loud", "pod-security.kubernetes.io/audit-version": "v2.0"}),
        )],
        &[],
        None,
    );
    let invalid = find(&f, "PSS-NAMESPACE-INVALID-LEVEL");
    for says in [
        "evaluates restricted instead",
        "evaluates privileged instead",
        "evaluates latest instead",
    ] {
        assert!(invalid.message.contains(says), "{says}: {invalid:?}");
    }
    assert!(invalid.fix.starts_with("kubectl label --overwrite ns n "));
    let pinned = namespaces(
        &[ns(
            "n",
            json!({"pod-security.kubernetes.io/enforce-version": "v1.22"}),
        )],
        &[],
        Some(30),
    );
    let pinned = find(&pinned, "PSS-NAMESPACE-VERSION-PINNED");
    assert!(
        pinned.message.contains("enforce-version=v1.22"),
        "{pinned:?}"
    );
    assert!(pinned.fix.contains("enforce-version=latest"), "{pinned:?}");
}

#[test]
fn warn_audit_names_only_the_modes_to_fix() {
    let cases = [
        (
            "warn unset is enforce's",
            json!({ENFORCE: "baseline"}),
            &["audit is unset"][..],
            &["warn is", "warning"][..],
            "pod-security.kubernetes.io/audit=restricted",
        ),
        (
            "warn weaker, audit fine",
            json!({ENFORCE: "restricted", WARN: "privileged", AUDIT: "restricted"}),
            &["warn=privileged is less strict", "draws no warning"],
            &["audit"],
            "pod-security.kubernetes.io/warn=restricted",
        ),
    ];
    for (case, labels, says, not, fix) in cases {
        let f = namespaces(&[ns("n", labels)], &[], Some(30));
        let f = find(&f, "PSS-NAMESPACE-WARN-AUDIT");
        for s in says {
            assert!(f.message.contains(s), "{case}: {s}: {f:?}");
        }
        for s in not {
            assert!(!f.message.contains(s), "{case}: {s}: {f:?}");
        }
        assert!(f.fix.ends_with(fix), "{case}: {f:?}");
        assert!(!f.message.contains("without a warning"), "{case}: {f:?}");
    }
}

#[test]
fn versions_parse_as_the_plugin_parses_them() {
    let cases = [
        ("latest", Some(None)),
        ("v1.0", Some(Some(0))),
        ("v1.36", Some(Some(36))),
        ("v1.4294967296", Some(Some(u32::MAX))),
        ("v1.9223372036854775807", Some(Some(u32::MAX))),
        ("v1.9223372036854775808", None),
        ("v1.99999999999999999999", None),
        ("v1.", None),
        ("v1.01", None),
        ("v1.+1", None),
        ("v2.0", None),
        ("Latest", None),
    ];
    for (value, want) in cases {
        assert_eq!(parse_version(value), want, "{value}");
    }
}

#[test]
fn no_pinned_version_finding_without_the_cluster_version() {
    let labels = json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
                        "pod-security.kubernetes.io/enforce-version": "v1.22"});
    check(
        "unknown cluster",
        &namespaces(&[ns("n", labels)], &[], None),
        &[],
    );
}

#[test]
fn finding_ids_follow_the_control_ids() {
    for control in CONTROLS {
        let mut words = String::new();
        let id = control
            .id
            .trim_end_matches("_baseline")
            .trim_end_matches("_restricted");
        let id = id.strip_prefix("restricted").unwrap_or(id);
        for ch in id.chars() {
            if ch.is_ascii_uppercase() && !words.is_empty() {
                words.push('-');
            }
            words.push(ch.to_ascii_uppercase());
        }
        let level = control.level.as_str().to_uppercase();
        let words = words.trim_start_matches('-');
        assert_eq!(
            control.finding,
            format!("PSS-{level}-{words}"),
            "{}",
            control.id
        );
    }
}

#[test]
fn each_control_rejects_a_violating_pod_at_its_level() {
    let restricted = ns("strict", all_modes("restricted"));
    let compliant = running("strict", "ok", restricted_pod());
    check(
        "compliant pod",
        &namespaces(std::slice::from_ref(&restricted), &[compliant], None),
        &[],
    );
    for control in CONTROLS {
        let spec = violating(control.id)
            .unwrap_or_else(|| panic!("no violating pod for control {}", control.id));
        // Unlabelled: the pod is only a step to take.
        let findings = namespaces(&[], &[running("apps", "p", spec.clone())], None);
        let quiet = match control.level {
            Level::Baseline => Warning,
            _ => Info,
        };
        let want = vec![
            ("PSS-NAMESPACE-REJECTS", Info, "namespace apps".to_owned()),
            (control.finding, quiet, "pod apps/p".to_owned()),
        ];
        assert_eq!(summary(&findings), want, "{}", control.id);
        let f = &findings[1];
        let says = format!(
            "would be rejected at {} by control {}:",
            control.level, control.id
        );
        assert!(f.message.contains(&says), "{}: {f:?}", control.id);
        assert!(f.fix.contains(control.rule), "{}: {f:?}", control.id);

        // Against the namespace's own restricted labels: an error.
        let findings = namespaces(
            std::slice::from_ref(&restricted),
            &[running("strict", "p", spec)],
            None,
        );
        let want = vec![
            ("PSS-NAMESPACE-REJECTS", Info, "namespace strict".to_owned()),
            (control.finding, Error, "pod strict/p".to_owned()),
        ];
        assert_eq!(summary(&findings), want, "{}", control.id);
    }
}

#[test]
fn severity_follows_the_enforced_level() {
    let host = violating("hostNamespaces").unwrap();
    let root = violating("runAsNonRoot").unwrap();
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "enforce baseline, warn and audit restricted: restricted is only announced",
            json!({ENFORCE: "baseline", WARN: "restricted", AUDIT: "restricted"}),
            &[
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Error, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Warning, "pod n/root"),
            ],
        ),
        (
            "audit restricted alone",
            json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "restricted"}),
            &[
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Error, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Warning, "pod n/root"),
            ],
        ),
        (
            "baseline in every mode",
            all_modes("baseline"),
            &[
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Error, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Info, "pod n/root"),
            ],
        ),
        (
            "enforce restricted alone: warn defaults to it",
            json!({ENFORCE: "restricted"}),
            &[
                ("PSS-NAMESPACE-WARN-AUDIT", Warning, "namespace n"),
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Error, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Error, "pod n/root"),
            ],
        ),
        (
            "invalid enforce evaluates restricted",
            json!({ENFORCE: "strict", WARN: "restricted", AUDIT: "restricted"}),
            &[
                ("PSS-NAMESPACE-INVALID-LEVEL", Warning, "namespace n"),
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Error, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Error, "pod n/root"),
            ],
        ),
        (
            "warn and audit restricted without enforce: nothing is rejected",
            json!({WARN: "restricted", AUDIT: "restricted"}),
            &[
                ("PSS-NAMESPACE-UNLABELLED", Warning, "namespace n"),
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Warning, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Warning, "pod n/root"),
            ],
        ),
        (
            "privileged in every mode, needed by the host pod",
            all_modes("privileged"),
            &[
                ("PSS-NAMESPACE-PRIVILEGED", Info, "namespace n"),
                ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
                ("PSS-BASELINE-HOST-NAMESPACES", Warning, "pod n/host"),
                ("PSS-RESTRICTED-RUN-AS-NON-ROOT", Info, "pod n/root"),
            ],
        ),
    ];
    for (case, labels, want) in cases {
        let pods = [
            running("n", "host", host.clone()),
            running("n", "root", root.clone()),
        ];
        let findings = namespaces(&[ns("n", labels)], &pods, None);
        check(case, &findings, want);
        for f in &findings {
            let against = f
                .message
                .contains("against the policy the namespace enforces");
            assert_eq!(against, f.severity == Error, "{case}: {f:?}");
            if f.severity == Warning && f.id.starts_with("PSS-RESTRICTED") {
                assert!(f.message.contains("reject nothing"), "{case}: {f:?}");
            }
        }
    }
}

/// Labelling an unlabelled namespace as its UNLABELLED fix says turns none of its pods'
/// findings into errors: restricted is then only warned about and audited.
#[test]
fn following_the_unlabelled_fix_makes_no_error() {
    let plain = json!({"containers": [{"name": "c", "image": "registry.example/c:1"}]});
    let pods = [running("n", "p", plain)];
    let before = namespaces(&[ns("n", json!({}))], &pods, Some(30));
    let fix = &find(&before, "PSS-NAMESPACE-UNLABELLED").fix;
    assert!(
        fix.contains("enforce=baseline")
            && fix.contains("warn=restricted")
            && fix.contains("audit=restricted"),
        "{fix}"
    );
    let restricted = |findings: &[Finding]| -> Vec<Severity> {
        findings
            .iter()
            .filter(|f| f.id.starts_with("PSS-RESTRICTED-"))
            .map(|f| f.severity)
            .collect()
    };
    assert_eq!(restricted(&before), [Info; 4], "{before:#?}");
    let labels = json!({ENFORCE: "baseline", WARN: "restricted", AUDIT: "restricted"});
    let after = namespaces(&[ns("n", labels)], &pods, Some(30));
    assert_eq!(restricted(&after), [Warning; 4], "{after:#?}");
}

#[test]
fn unlabelled_fix_names_the_strictest_level_its_pods_pass() {
    let cases = [
        ("no pods", vec![], "enforce=restricted"),
        (
            "compliant pods",
            vec![restricted_pod()],
            "enforce=restricted",
        ),
        (
            "a pod failing restricted only",
            vec![restricted_pod(), violating("runAsUser").unwrap()],
            "enforce=baseline",
        ),
        (
            "a pod failing baseline",
            vec![violating("privileged").unwrap()],
            "enforce=privileged",
        ),
    ];
    for (case, specs, level) in cases {
        let pods: Vec<Pod> = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| running("n", &format!("p{i}"), s))
            .collect();
        let findings = namespaces(&[ns("n", json!({}))], &pods, None);
        let f = find(&findings, "PSS-NAMESPACE-UNLABELLED");
        assert!(f.fix.contains(level), "{case}: {f:?}");
        assert!(f.message.contains("not yet evaluated"), "{case}: {f:?}");
    }
}

#[test]
fn pods_of_one_controller_are_one_finding() {
    let host = violating("hostNamespaces").unwrap();
    let mut pods: Vec<Pod> = (0..5)
        .map(|i| {
            owned(
                running("apps", &format!("web-{i}"), host.clone()),
                "ReplicaSet",
                "web",
            )
        })
        .collect();
    pods.push(running("apps", "debug", host.clone()));
    let findings = namespaces(&[], &pods, None);
    check(
        "five replicas and a bare pod",
        &findings,
        &[
            ("PSS-NAMESPACE-REJECTS", Info, "namespace apps"),
            ("PSS-BASELINE-HOST-NAMESPACES", Warning, "pod apps/debug"),
            (
                "PSS-BASELINE-HOST-NAMESPACES",
                Warning,
                "replicaset apps/web",
            ),
        ],
    );
    assert!(
        findings[0]
            .message
            .contains("of its 6 running pods, 6 would be rejected at baseline"),
        "{:?}",
        findings[0]
    );
    let web = &findings[2].message;
    assert!(
        web.starts_with("5 running pod(s) (web-0, web-1, web-2, ...) would be rejected"),
        "{web}"
    );
    assert!(web.contains("spec.hostPID=true"), "{web}");
    assert!(
        findings[1]
            .message
            .starts_with("the running pod would be rejected"),
        "{:?}",
        findings[1]
    );
}

#[test]
fn bare_pods_beyond_the_named_ones_share_a_finding() {
    use super::BARE_PODS_NAMED;
    let host = violating("hostNamespaces").unwrap();
    let total = BARE_PODS_NAMED + 30;
    let pods: Vec<Pod> = (0..total)
        .map(|i| running("batch", &format!("job-{i:03}"), host.clone()))
        .collect();
    let findings = namespaces(&[], &pods, None);
    let per_control: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.id == "PSS-BASELINE-HOST-NAMESPACES")
        .collect();
    // The first ones by name, one finding each; the other 30 in one, on the namespace.
    assert_eq!(per_control.len(), BARE_PODS_NAMED + 1);
    let folded: Vec<&&Finding> = per_control
        .iter()
        .filter(|f| f.object == "namespace batch")
        .collect();
    assert_eq!(folded.len(), 1);
    assert!(
        folded[0].message.starts_with(&format!(
            "30 more running pod(s) without a controller (job-{BARE_PODS_NAMED:03}, "
        )),
        "{}",
        folded[0].message
    );
    // Every pod is still counted.
    let rejects = find(&findings, "PSS-NAMESPACE-REJECTS");
    assert!(
        rejects
            .message
            .contains(&format!("of its {total} running pods, {total} would")),
        "{}",
        rejects.message
    );
}

#[test]
fn terminated_pods_are_ignored() {
    let host = violating("hostNamespaces").unwrap();
    let pods = [
        pod_with("n", "done", host.clone(), "Succeeded"),
        pod_with("n", "failed", host, "Failed"),
    ];
    let labelled = ns("n", all_modes("restricted"));
    check("terminated", &namespaces(&[labelled], &pods, None), &[]);
}

#[test]
fn namespaces_may_come_after_pods() {
    let namespaces_list = [
        ns("a", json!({})),
        ns("b", all_modes("baseline")),
        ns("c", all_modes("privileged")),
    ];
    let pods = [
        running("a", "p", violating("runAsUser").unwrap()),
        running("b", "p", violating("hostPorts").unwrap()),
        running("c", "p", violating("privileged").unwrap()),
        running("d", "p", violating("sysctls").unwrap()),
    ];
    let before = namespaces(&namespaces_list, &pods, Some(30));
    let mut after = Namespaces::new(Some(30));
    pods.iter().for_each(|p| after.add_pod(p));
    namespaces_list.iter().for_each(|n| after.add_namespace(n));
    let after = after.finish();
    assert_eq!(before, after);
    check(
        "mixed",
        &after,
        &[
            ("PSS-NAMESPACE-UNLABELLED", Warning, "namespace a"),
            ("PSS-NAMESPACE-REJECTS", Info, "namespace a"),
            ("PSS-RESTRICTED-RUN-AS-USER", Info, "pod a/p"),
            ("PSS-NAMESPACE-REJECTS", Info, "namespace b"),
            ("PSS-BASELINE-HOST-PORTS", Error, "pod b/p"),
            ("PSS-NAMESPACE-PRIVILEGED", Info, "namespace c"),
            ("PSS-NAMESPACE-REJECTS", Info, "namespace c"),
            ("PSS-BASELINE-PRIVILEGED", Warning, "pod c/p"),
            // Not listed: its labels are unknown, so no label finding and no error.
            ("PSS-NAMESPACE-REJECTS", Info, "namespace d"),
            ("PSS-BASELINE-SYSCTLS", Warning, "pod d/p"),
        ],
    );
    assert!(
        after[9].message.contains("was not listed"),
        "{:?}",
        after[9]
    );
}

#[test]
fn missing_fields_do_not_panic() {
    let bare: Pod = k8s(json!({}));
    let no_spec: Pod = k8s(json!({"metadata": {"namespace": "n", "name": "x"}}));
    let no_namespace = running("", "p", violating("privileged").unwrap());
    let mut no_name = running("n", "", violating("privileged").unwrap());
    no_name.metadata.name = None;
    let findings = namespaces(
        &[k8s(json!({})), ns("n", Value::Null)],
        &[bare, no_spec, no_namespace, no_name],
        Some(30),
    );
    let objects: Vec<_> = summary(&findings)
        .into_iter()
        .map(|(id, _, o)| (id, o))
        .collect();
    assert!(
        objects.contains(&("PSS-BASELINE-PRIVILEGED", "pod p".to_owned())),
        "{objects:?}"
    );
    assert!(
        objects.contains(&("PSS-BASELINE-PRIVILEGED", "pod n/(unnamed)".to_owned())),
        "{objects:?}"
    );
}

/// 150,000 pods of 1,500 ReplicaSets and 1,500 bare pods, each failing restricted: run with
/// `cargo test --release -p kubepki-audit -- --ignored scale` and watch time and memory.
#[test]
#[ignore]
fn scale() {
    let spec = violating("hostNamespaces").unwrap();
    let template: Pod = running("ns", "p", spec);
    let mut n = Namespaces::new(Some(30));
    let start = std::time::Instant::now();
    for i in 0..150_000u32 {
        let mut pod = template.clone();
        pod.metadata.namespace = Some(format!("ns-{}", i % 100));
        pod.metadata.name = Some(format!("pod-{i}"));
        let pod = if i % 100 == 0 {
            pod
        } else {
            owned(pod, "ReplicaSet", &format!("rs-{}", i % 1500))
        };
        n.add_pod(&pod);
    }
    let findings = n.finish();
    eprintln!("{} findings in {:?}", findings.len(), start.elapsed());
}

/// Pods are judged at the version the cluster's plugin evaluates for the namespace's enforce:
/// the older of the cluster's minor and the pin; the newest known before v1.23 or unknown.
#[test]
fn pods_are_judged_at_the_version_enforce_evaluates() {
    let mut rmem = restricted_pod();
    rmem["securityContext"]["sysctls"] = json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]);
    let probe = violating("hostProbesAndHostLifecycle").unwrap();
    let pin = |v: &str| {
        json!({ENFORCE: "baseline", WARN: "baseline", AUDIT: "baseline",
               "pod-security.kubernetes.io/enforce-version": v})
    };
    let sysctls: Want = &[
        ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
        ("PSS-BASELINE-SYSCTLS", Error, "pod n/p"),
    ];
    let probes: Want = &[
        ("PSS-NAMESPACE-REJECTS", Info, "namespace n"),
        (
            "PSS-BASELINE-HOST-PROBES-AND-HOST-LIFECYCLE",
            Error,
            "pod n/p",
        ),
    ];
    // (case, cluster minor, labels, pod spec, findings, what every finding says)
    type Case<'a> = (&'a str, Option<u32>, Value, &'a Value, Want, &'a str);
    let cases: Vec<Case> = vec![
        (
            "tcp_rmem at v1.31",
            Some(31),
            all_modes("baseline"),
            &rmem,
            sysctls,
            "policy v1.31, what enforce",
        ),
        (
            "tcp_rmem at v1.32",
            Some(32),
            all_modes("baseline"),
            &rmem,
            &[],
            "",
        ),
        (
            "tcp_rmem, pinned v1.31 on v1.36",
            Some(36),
            pin("v1.31"),
            &rmem,
            sysctls,
            "enforce-version pins",
        ),
        (
            "tcp_rmem, pinned latest on v1.36",
            Some(36),
            pin("latest"),
            &rmem,
            &[],
            "",
        ),
        (
            "tcp_rmem, pinned newer than v1.31",
            Some(31),
            pin("v1.40"),
            &rmem,
            sysctls,
            "policy v1.31",
        ),
        (
            "tcp_rmem, pinned v1.31 before the plugin",
            Some(20),
            pin("v1.31"),
            &rmem,
            &[],
            "",
        ),
        (
            "tcp_rmem, unknown cluster",
            None,
            all_modes("baseline"),
            &rmem,
            &[],
            "",
        ),
        (
            "host probe at v1.33",
            Some(33),
            all_modes("baseline"),
            &probe,
            &[],
            "",
        ),
        (
            "host probe at v1.34",
            Some(34),
            all_modes("baseline"),
            &probe,
            probes,
            "policy v1.34",
        ),
        (
            "host probe on v1.22",
            Some(22),
            all_modes("baseline"),
            &probe,
            probes,
            "v1.22 API servers",
        ),
        (
            "host probe, unknown cluster",
            None,
            all_modes("baseline"),
            &probe,
            probes,
            "version is unknown",
        ),
        (
            "host probe on v1.40",
            Some(40),
            all_modes("baseline"),
            &probe,
            probes,
            "policy v1.36, the newest",
        ),
    ];
    for (case, cluster, labels, spec, want, says) in cases {
        let findings = namespaces(
            &[ns("n", labels)],
            &[running("n", "p", spec.clone())],
            cluster,
        );
        let findings: Vec<Finding> = findings
            .into_iter()
            .filter(|f| f.id != "PSS-NAMESPACE-VERSION-PINNED")
            .collect();
        check(case, &findings, want);
        for f in &findings {
            assert!(f.message.contains(says), "{case}: {f:?}");
        }
    }
}

/// The UNLABELLED fix's level is judged at the version enforce will use once labelled.
#[test]
fn unlabelled_fix_is_judged_at_the_clusters_latest() {
    let mut rmem = restricted_pod();
    rmem["securityContext"]["sysctls"] = json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]);
    let probe = violating("hostProbesAndHostLifecycle").unwrap();
    let cases = [
        ("tcp_rmem on v1.31", Some(31), &rmem, "enforce=privileged"),
        ("tcp_rmem on v1.32", Some(32), &rmem, "enforce=restricted"),
        (
            "tcp_rmem before the plugin",
            Some(20),
            &rmem,
            "enforce=restricted",
        ),
        (
            "host probe on v1.33",
            Some(33),
            &probe,
            "enforce=restricted",
        ),
        (
            "host probe on v1.34",
            Some(34),
            &probe,
            "enforce=privileged",
        ),
    ];
    for (case, cluster, spec, level) in cases {
        let findings = namespaces(
            &[ns("n", json!({}))],
            &[running("n", "p", spec.clone())],
            cluster,
        );
        let f = find(&findings, "PSS-NAMESPACE-UNLABELLED");
        assert!(f.fix.contains(level), "{case}: {f:?}");
    }
}
