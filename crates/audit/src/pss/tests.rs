//! Each control's table: pods that comply and pods that violate it, each built from a pod that
//! complies with the whole restricted profile, so that a case violates nothing else.

use serde_json::{Value, json};

use super::*;
use crate::testing::restricted_pod;
use Level::{Baseline, Privileged, Restricted};

/// Merges `patch` into `base`: objects key by key, `null` removes a key, lists of objects with
/// a `name` item by item on that name (others appended), anything else replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (Value::Array(b), Value::Array(p))
            if !p.is_empty() && p.iter().all(|i| i.get("name").is_some()) =>
        {
            for item in p {
                match b.iter_mut().find(|i| i.get("name") == item.get("name")) {
                    Some(existing) => merge(existing, item),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// A spec patch that sets these fields of the container `web`'s security context.
fn web(security_context: Value) -> Value {
    json!({"containers": [{"name": "web", "securityContext": security_context}]})
}

struct Case {
    name: &'static str,
    /// Merged into [`restricted_pod`].
    spec: Value,
    annotations: &'static [(&'static str, &'static str)],
    /// Every violation at `restricted`, in order: (control, level, field, value).
    expect: &'static [(&'static str, Level, &'static str, &'static str)],
}

fn case(
    name: &'static str,
    spec: Value,
    expect: &'static [(&'static str, Level, &'static str, &'static str)],
) -> Case {
    Case {
        name,
        spec,
        annotations: &[],
        expect,
    }
}

fn pod(case: &Case) -> (PodSpec, ObjectMeta) {
    let mut spec = restricted_pod();
    merge(&mut spec, &case.spec);
    let spec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let annotations = case
        .annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let meta = ObjectMeta {
        name: Some("p".into()),
        namespace: Some("default".into()),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    (spec, meta)
}

/// Runs a control's table: at every level the pod has exactly the expected violations of that
/// level and below, so a violating pod passes at the level below the one that forbids it. The
/// table must hold a compliant pod and a pod violating `control`.
fn run(control: &str, cases: &[Case]) {
    assert!(
        cases.iter().any(|c| c.expect.is_empty()),
        "{control}: no compliant case"
    );
    assert!(
        cases
            .iter()
            .any(|c| c.expect.iter().any(|(id, ..)| *id == control)),
        "{control}: no violating case"
    );
    let known = CONTROLS.iter().find(|c| c.id == control);
    for case in cases {
        let (spec, meta) = pod(case);
        for &level in Level::ALL {
            let got: Vec<_> = violations(&spec, &meta, level, LATEST)
                .into_iter()
                .map(|v| (v.control, v.level, v.field, v.value))
                .collect();
            let want: Vec<_> = case
                .expect
                .iter()
                .filter(|(_, l, ..)| *l <= level)
                .map(|&(c, l, f, v)| (c, l, f.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(got, want, "{control}: {} at {level}", case.name);
        }
        for (id, level, ..) in case.expect {
            let c = CONTROLS.iter().find(|c| c.id == *id).expect(id);
            assert_eq!(
                c.level, *level,
                "{}: {id} is a {} control",
                case.name, c.level
            );
        }
    }
    assert!(known.is_some(), "{control} is not in CONTROLS");
}

#[test]
fn the_restricted_pod_complies_at_every_level() {
    let cases = [case("restricted", json!({}), &[])];
    for case in &cases {
        let (spec, meta) = pod(case);
        for &level in Level::ALL {
            assert_eq!(violations(&spec, &meta, level, LATEST), []);
        }
    }
}

#[test]
fn a_pod_with_every_allowed_value_complies_with_restricted() {
    let spec = json!({
        "hostNetwork": false, "hostPID": false, "hostIPC": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/web.json"},
            "appArmorProfile": {"type": "RuntimeDefault"},
            "seLinuxOptions": {"type": "container_t", "level": "s0:c123,c456"},
            "windowsOptions": {"hostProcess": false},
            "sysctls": SAFE_SYSCTLS.iter().map(|(n, _)| json!({"name": n, "value": "1"})).collect::<Vec<_>>(),
        },
        "initContainers": [{
            "name": "setup",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "privileged": false,
                "procMount": "Default",
                "runAsNonRoot": true,
                "seLinuxOptions": {"type": "container_init_t"},
                "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-web"},
            },
        }],
        "containers": [{
            "name": "web",
            "ports": [{"containerPort": 8080}, {"containerPort": 8443, "hostPort": 0}],
            "livenessProbe": {"httpGet": {"port": 8080, "host": ""}},
            "readinessProbe": {"tcpSocket": {"port": 8080}},
            "lifecycle": {"preStop": {"httpGet": {"port": 8080}}},
        }],
        "ephemeralContainers": [{
            "name": "debug",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }],
        "volumes": [
            {"name": "cm", "configMap": {"name": "web"}},
            {"name": "csi", "csi": {"driver": "csi.example"}},
            {"name": "down", "downwardAPI": {}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "img", "image": {"reference": "registry.example/data:1"}},
            {"name": "pvc", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "proj", "projected": {"sources": []}},
            {"name": "sec", "secret": {"secretName": "tls"}},
        ],
    });
    let c = Case {
        name: "every allowed value",
        spec,
        annotations: &[
            (
                "container.apparmor.security.beta.kubernetes.io/web",
                "runtime/default",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/setup",
                "localhost/k8s-web",
            ),
            ("container.apparmor.security.beta.kubernetes.io/debug", ""),
            ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
        ],
        expect: &[],
    };
    let (spec, meta) = pod(&c);
    assert_eq!(violations(&spec, &meta, Restricted, LATEST), []);
}

#[test]
fn privileged_forbids_nothing() {
    let c = case(
        "everything",
        json!({
            "hostNetwork": true,
            "securityContext": {"runAsUser": 0, "sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "containers": [{"name": "web", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        }),
        &[],
    );
    let (spec, meta) = pod(&c);
    assert_eq!(violations(&spec, &meta, Privileged, LATEST), []);
    assert!(!violations(&spec, &meta, Baseline, LATEST).is_empty());
}

#[test]
fn host_namespaces() {
    run(
        "hostNamespaces",
        &[
            case(
                "all false",
                json!({"hostNetwork": false, "hostPID": false, "hostIPC": false}),
                &[],
            ),
            case(
                "hostNetwork",
                json!({"hostNetwork": true}),
                &[("hostNamespaces", Baseline, "spec.hostNetwork", "true")],
            ),
            case(
                "all three",
                json!({"hostNetwork": true, "hostPID": true, "hostIPC": true}),
                &[
                    ("hostNamespaces", Baseline, "spec.hostNetwork", "true"),
                    ("hostNamespaces", Baseline, "spec.hostPID", "true"),
                    ("hostNamespaces", Baseline, "spec.hostIPC", "true"),
                ],
            ),
        ],
    );
}

#[test]
fn privileged() {
    run(
        "privileged",
        &[
            case("false", web(json!({"privileged": false})), &[]),
            case(
                "container",
                web(json!({"privileged": true})),
                &[(
                    "privileged",
                    Baseline,
                    "spec.containers[web].securityContext.privileged",
                    "true",
                )],
            ),
            case(
                "init container",
                json!({"initContainers": [{
                    "name": "setup",
                    "securityContext": {
                        "privileged": true,
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }]}),
                &[(
                    "privileged",
                    Baseline,
                    "spec.initContainers[setup].securityContext.privileged",
                    "true",
                )],
            ),
        ],
    );
}

#[test]
fn capabilities_baseline() {
    run(
        "capabilities_baseline",
        &[
            case(
                "NET_BIND_SERVICE",
                web(json!({"capabilities": {"add": ["NET_BIND_SERVICE"]}})),
                &[],
            ),
            case(
                "SYS_ADMIN and NET_RAW",
                web(json!({"capabilities": {"add": ["SYS_ADMIN", "CHOWN", "NET_RAW"]}})),
                &[
                    (
                        "capabilities_baseline",
                        Baseline,
                        "spec.containers[web].securityContext.capabilities.add",
                        "SYS_ADMIN",
                    ),
                    (
                        "capabilities_baseline",
                        Baseline,
                        "spec.containers[web].securityContext.capabilities.add",
                        "NET_RAW",
                    ),
                    // Baseline allows CHOWN, restricted does not.
                    (
                        "capabilities_restricted",
                        Restricted,
                        "spec.containers[web].securityContext.capabilities.add",
                        "CHOWN",
                    ),
                ],
            ),
            case(
                // The names are compared exactly, as the runtime would not take these either.
                "lower case and CAP_ prefix",
                web(json!({"capabilities": {"add": ["chown", "CAP_CHOWN"]}})),
                &[
                    (
                        "capabilities_baseline",
                        Baseline,
                        "spec.containers[web].securityContext.capabilities.add",
                        "chown",
                    ),
                    (
                        "capabilities_baseline",
                        Baseline,
                        "spec.containers[web].securityContext.capabilities.add",
                        "CAP_CHOWN",
                    ),
                ],
            ),
            case(
                "ephemeral container",
                json!({"ephemeralContainers": [{"name": "debug", "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]},
                }}]}),
                &[(
                    "capabilities_baseline",
                    Baseline,
                    "spec.ephemeralContainers[debug].securityContext.capabilities.add",
                    "SYS_PTRACE",
                )],
            ),
        ],
    );
}

#[test]
fn capabilities_restricted() {
    run(
        "capabilities_restricted",
        &[
            case(
                "drop ALL among others",
                web(json!({"capabilities": {"drop": ["NET_RAW", "ALL"]}})),
                &[],
            ),
            case(
                "no capabilities",
                web(json!({"capabilities": null})),
                &[(
                    "capabilities_restricted",
                    Restricted,
                    "spec.containers[web].securityContext.capabilities.drop",
                    "unset",
                )],
            ),
            case(
                "drop all in lower case",
                web(json!({"capabilities": {"drop": ["all", "NET_RAW"]}})),
                &[(
                    "capabilities_restricted",
                    Restricted,
                    "spec.containers[web].securityContext.capabilities.drop",
                    "[all, NET_RAW]",
                )],
            ),
            case(
                "adds a default capability",
                web(json!({"capabilities": {"add": ["NET_BIND_SERVICE", "SETUID"]}})),
                &[(
                    "capabilities_restricted",
                    Restricted,
                    "spec.containers[web].securityContext.capabilities.add",
                    "SETUID",
                )],
            ),
        ],
    );
}

#[test]
fn host_path_volumes() {
    run(
        "hostPathVolumes",
        &[
            case(
                "emptyDir",
                json!({"volumes": [{"name": "scratch", "emptyDir": {}}]}),
                &[],
            ),
            case(
                "hostPath",
                json!({"volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "etc", "hostPath": {"path": "/etc/kubernetes", "type": "Directory"}},
                ]}),
                &[(
                    "hostPathVolumes",
                    Baseline,
                    "spec.volumes[etc].hostPath.path",
                    "/etc/kubernetes",
                )],
            ),
        ],
    );
}

#[test]
fn restricted_volumes() {
    run(
        "restrictedVolumes",
        &[
            case(
                "pvc and secret",
                json!({"volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "tls", "secret": {"secretName": "tls"}},
                ]}),
                &[],
            ),
            case(
                "nfs, gitRepo and no source",
                json!({"volumes": [
                    {"name": "share", "nfs": {"server": "nfs.example", "path": "/export"}},
                    {"name": "code", "gitRepo": {"repository": "https://git.example/x"}},
                    {"name": "nothing"},
                ]}),
                &[
                    (
                        "restrictedVolumes",
                        Restricted,
                        "spec.volumes[share]",
                        "nfs",
                    ),
                    (
                        "restrictedVolumes",
                        Restricted,
                        "spec.volumes[code]",
                        "gitRepo",
                    ),
                    (
                        "restrictedVolumes",
                        Restricted,
                        "spec.volumes[nothing]",
                        "unknown",
                    ),
                ],
            ),
            case(
                "hostPath is reported once, as baseline",
                json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
                &[(
                    "hostPathVolumes",
                    Baseline,
                    "spec.volumes[root].hostPath.path",
                    "/",
                )],
            ),
        ],
    );
}

#[test]
fn host_ports() {
    run(
        "hostPorts",
        &[
            case(
                "container ports only",
                json!({"containers": [{"name": "web", "ports": [{"containerPort": 80, "hostPort": 0}]}]}),
                &[],
            ),
            case(
                "host ports",
                json!({"containers": [{"name": "web", "ports": [
                    {"containerPort": 80},
                    {"containerPort": 443, "hostPort": 443},
                ]}]}),
                &[(
                    "hostPorts",
                    Baseline,
                    "spec.containers[web].ports[1].hostPort",
                    "443",
                )],
            ),
        ],
    );
}

#[test]
fn host_probes_and_host_lifecycle() {
    run(
        "hostProbesAndHostLifecycle",
        &[
            case(
                "no host",
                json!({"containers": [{"name": "web",
                    "livenessProbe": {"httpGet": {"port": 80, "host": ""}},
                    "lifecycle": {"postStart": {"tcpSocket": {"port": 80}}},
                }]}),
                &[],
            ),
            case(
                "probe and handler hosts",
                json!({"containers": [{"name": "web",
                    "startupProbe": {"tcpSocket": {"port": 2379, "host": "10.0.0.1"}},
                    "lifecycle": {"preStop": {"httpGet": {"port": 80, "host": "metadata.internal"}}},
                }]}),
                &[
                    (
                        "hostProbesAndHostLifecycle",
                        Baseline,
                        "spec.containers[web].startupProbe.tcpSocket.host",
                        "10.0.0.1",
                    ),
                    (
                        "hostProbesAndHostLifecycle",
                        Baseline,
                        "spec.containers[web].lifecycle.preStop.httpGet.host",
                        "metadata.internal",
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn app_armor_profile() {
    run(
        "appArmorProfile",
        &[
            case(
                "localhost",
                json!({"securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s"}}}),
                &[],
            ),
            Case {
                name: "allowed annotations",
                spec: json!({}),
                annotations: &[
                    (
                        "container.apparmor.security.beta.kubernetes.io/web",
                        "localhost/k8s",
                    ),
                    ("apparmor.example/web", "unconfined"),
                ],
                expect: &[],
            },
            case(
                "unconfined in pod and container",
                json!({
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "containers": [{"name": "web", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
                }),
                &[
                    (
                        "appArmorProfile",
                        Baseline,
                        "spec.securityContext.appArmorProfile.type",
                        "Unconfined",
                    ),
                    (
                        "appArmorProfile",
                        Baseline,
                        "spec.containers[web].securityContext.appArmorProfile.type",
                        "Unconfined",
                    ),
                ],
            ),
            Case {
                name: "unconfined annotation, for any container name",
                spec: json!({}),
                annotations: &[
                    (
                        "container.apparmor.security.beta.kubernetes.io/web",
                        "unconfined",
                    ),
                    (
                        "container.apparmor.security.beta.kubernetes.io/gone",
                        "docker/default",
                    ),
                ],
                expect: &[
                    (
                        "appArmorProfile",
                        Baseline,
                        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/gone]",
                        "docker/default",
                    ),
                    (
                        "appArmorProfile",
                        Baseline,
                        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]",
                        "unconfined",
                    ),
                ],
            },
        ],
    );
}

#[test]
fn se_linux_options() {
    run(
        "seLinuxOptions",
        &[
            case(
                "allowed types and a level",
                json!({
                    "securityContext": {"seLinuxOptions": {"type": "container_engine_t", "level": "s0:c1,c2"}},
                    "containers": [{"name": "web", "securityContext": {"seLinuxOptions": {"type": "container_kvm_t", "user": "", "role": ""}}}],
                }),
                &[],
            ),
            case(
                "spc_t at pod level",
                json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}),
                &[(
                    "seLinuxOptions",
                    Baseline,
                    "spec.securityContext.seLinuxOptions.type",
                    "spc_t",
                )],
            ),
            case(
                "user and role on a container",
                web(json!({"seLinuxOptions": {"user": "system_u", "role": "system_r"}})),
                &[
                    (
                        "seLinuxOptions",
                        Baseline,
                        "spec.containers[web].securityContext.seLinuxOptions.user",
                        "system_u",
                    ),
                    (
                        "seLinuxOptions",
                        Baseline,
                        "spec.containers[web].securityContext.seLinuxOptions.role",
                        "system_r",
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn proc_mount() {
    run(
        "procMount",
        &[
            case("Default", web(json!({"procMount": "Default"})), &[]),
            case(
                "Unmasked",
                web(json!({"procMount": "Unmasked"})),
                &[(
                    "procMount",
                    Baseline,
                    "spec.containers[web].securityContext.procMount",
                    "Unmasked",
                )],
            ),
            case(
                "hostUsers: true is no user namespace",
                json!({"hostUsers": true, "containers": [{"name": "web", "securityContext": {"procMount": "Unmasked"}}]}),
                &[(
                    "procMount",
                    Baseline,
                    "spec.containers[web].securityContext.procMount",
                    "Unmasked",
                )],
            ),
        ],
    );
}

#[test]
fn proc_mount_restricted() {
    run(
        "procMount_restricted",
        &[
            case("user namespace, unset", json!({"hostUsers": false}), &[]),
            case(
                // The user namespace relaxes root (runAsNonRoot, runAsUser), not /proc.
                "root and Unmasked in a user namespace",
                json!({
                    "hostUsers": false,
                    "securityContext": {"runAsNonRoot": null, "runAsUser": 0},
                    "containers": [{"name": "web", "securityContext": {"procMount": "Unmasked"}}],
                }),
                &[(
                    "procMount_restricted",
                    Restricted,
                    "spec.containers[web].securityContext.procMount",
                    "Unmasked",
                )],
            ),
        ],
    );
}

#[test]
fn seccomp_profile_baseline() {
    run(
        "seccompProfile_baseline",
        &[
            case(
                "Localhost",
                json!({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "a.json"}}}),
                &[],
            ),
            case(
                "Unconfined at pod level",
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
                &[(
                    "seccompProfile_baseline",
                    Baseline,
                    "spec.securityContext.seccompProfile.type",
                    "Unconfined",
                )],
            ),
            case(
                "Unconfined on a container overrides the pod's RuntimeDefault",
                web(json!({"seccompProfile": {"type": "Unconfined"}})),
                &[(
                    "seccompProfile_baseline",
                    Baseline,
                    "spec.containers[web].securityContext.seccompProfile.type",
                    "Unconfined",
                )],
            ),
        ],
    );
}

#[test]
fn seccomp_profile_restricted() {
    run(
        "seccompProfile_restricted",
        &[
            case(
                "every container sets one",
                json!({
                    "securityContext": {"seccompProfile": null},
                    "containers": [{"name": "web", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}],
                }),
                &[],
            ),
            case(
                "neither pod nor container",
                json!({"securityContext": {"seccompProfile": null}}),
                &[(
                    "seccompProfile_restricted",
                    Restricted,
                    "spec.containers[web].securityContext.seccompProfile.type",
                    "unset",
                )],
            ),
            case(
                "one container of two",
                json!({
                    "securityContext": {"seccompProfile": null},
                    "containers": [
                        {"name": "web", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "a.json"}}},
                        {"name": "sidecar", "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                        }},
                    ],
                }),
                &[(
                    "seccompProfile_restricted",
                    Restricted,
                    "spec.containers[sidecar].securityContext.seccompProfile.type",
                    "unset",
                )],
            ),
            case(
                // The containers inherit the forbidden value: fixing the pod fixes them.
                "Unconfined at pod level is reported once",
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
                &[(
                    "seccompProfile_baseline",
                    Baseline,
                    "spec.securityContext.seccompProfile.type",
                    "Unconfined",
                )],
            ),
        ],
    );
}

#[test]
fn sysctls() {
    run(
        "sysctls",
        &[
            case(
                "safe",
                json!({"securityContext": {"sysctls": [
                    {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
                    {"name": "net.ipv4.tcp_wmem", "value": "4096 16384 4194304"},
                ]}}),
                &[],
            ),
            case(
                "unsafe, and v1.37's not yet safe",
                json!({"securityContext": {"sysctls": [
                    {"name": "kernel.shm_rmid_forced", "value": "1"},
                    {"name": "net.core.somaxconn", "value": "1024"},
                    {"name": "net.ipv4.tcp_slow_start_after_idle", "value": "0"},
                ]}}),
                &[
                    (
                        "sysctls",
                        Baseline,
                        "spec.securityContext.sysctls[1].name",
                        "net.core.somaxconn",
                    ),
                    (
                        "sysctls",
                        Baseline,
                        "spec.securityContext.sysctls[2].name",
                        "net.ipv4.tcp_slow_start_after_idle",
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn windows_host_process() {
    run(
        "windowsHostProcess",
        &[
            case(
                "false",
                json!({"securityContext": {"windowsOptions": {"hostProcess": false}}}),
                &[],
            ),
            case(
                "pod and container",
                json!({
                    "securityContext": {"windowsOptions": {"hostProcess": true}},
                    "containers": [{"name": "web", "securityContext": {"windowsOptions": {"hostProcess": true}}}],
                }),
                &[
                    (
                        "windowsHostProcess",
                        Baseline,
                        "spec.securityContext.windowsOptions.hostProcess",
                        "true",
                    ),
                    (
                        "windowsHostProcess",
                        Baseline,
                        "spec.containers[web].securityContext.windowsOptions.hostProcess",
                        "true",
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn allow_privilege_escalation() {
    run(
        "allowPrivilegeEscalation",
        &[
            case(
                "windows pods are exempt",
                json!({
                    "os": {"name": "windows"},
                    "containers": [{"name": "web", "securityContext": {"allowPrivilegeEscalation": null}}],
                }),
                &[],
            ),
            case(
                "unset",
                web(json!({"allowPrivilegeEscalation": null})),
                &[(
                    "allowPrivilegeEscalation",
                    Restricted,
                    "spec.containers[web].securityContext.allowPrivilegeEscalation",
                    "unset",
                )],
            ),
            case(
                "true on a linux pod",
                json!({
                    "os": {"name": "linux"},
                    "containers": [{"name": "web", "securityContext": {"allowPrivilegeEscalation": true}}],
                }),
                &[(
                    "allowPrivilegeEscalation",
                    Restricted,
                    "spec.containers[web].securityContext.allowPrivilegeEscalation",
                    "true",
                )],
            ),
        ],
    );
}

#[test]
fn run_as_non_root() {
    run(
        "runAsNonRoot",
        &[
            case(
                "every container instead of the pod",
                json!({
                    "securityContext": {"runAsNonRoot": null},
                    "containers": [{"name": "web", "securityContext": {"runAsNonRoot": true}}],
                }),
                &[],
            ),
            case(
                "pod true, container overrides false",
                web(json!({"runAsNonRoot": false})),
                &[(
                    "runAsNonRoot",
                    Restricted,
                    "spec.containers[web].securityContext.runAsNonRoot",
                    "false",
                )],
            ),
            case(
                // A pod-level false is forbidden even when every container overrides it.
                "pod false, container true",
                json!({
                    "securityContext": {"runAsNonRoot": false},
                    "containers": [{"name": "web", "securityContext": {"runAsNonRoot": true}}],
                }),
                &[(
                    "runAsNonRoot",
                    Restricted,
                    "spec.securityContext.runAsNonRoot",
                    "false",
                )],
            ),
            case(
                "pod unset, init container unset",
                json!({
                    "securityContext": {"runAsNonRoot": null},
                    "initContainers": [{"name": "setup", "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                    }}],
                    "containers": [{"name": "web", "securityContext": {"runAsNonRoot": true}}],
                }),
                &[(
                    "runAsNonRoot",
                    Restricted,
                    "spec.initContainers[setup].securityContext.runAsNonRoot",
                    "unset",
                )],
            ),
        ],
    );
}

#[test]
fn run_as_user() {
    run(
        "runAsUser",
        &[
            case(
                "non-zero",
                json!({
                    "securityContext": {"runAsUser": 1000},
                    "containers": [{"name": "web", "securityContext": {"runAsUser": 65534}}],
                }),
                &[],
            ),
            case(
                "root in a user namespace",
                json!({
                    "hostUsers": false,
                    "securityContext": {"runAsNonRoot": false, "runAsUser": 0},
                    "containers": [{"name": "web", "securityContext": {"runAsUser": 0}}],
                }),
                &[],
            ),
            case(
                "pod 1000, container overrides 0",
                json!({
                    "securityContext": {"runAsUser": 1000},
                    "containers": [{"name": "web", "securityContext": {"runAsUser": 0}}],
                }),
                &[(
                    "runAsUser",
                    Restricted,
                    "spec.containers[web].securityContext.runAsUser",
                    "0",
                )],
            ),
            case(
                // Forbidden even when every container overrides it.
                "pod 0, container 1000",
                json!({
                    "securityContext": {"runAsUser": 0},
                    "containers": [{"name": "web", "securityContext": {"runAsUser": 1000}}],
                }),
                &[(
                    "runAsUser",
                    Restricted,
                    "spec.securityContext.runAsUser",
                    "0",
                )],
            ),
        ],
    );
}

#[test]
fn a_windows_pod_still_needs_baseline_and_non_root() {
    run(
        "windowsHostProcess",
        &[
            case(
                "windows, nothing Linux-specific set",
                json!({
                    "os": {"name": "windows"},
                    "securityContext": {"seccompProfile": null},
                    "containers": [{"name": "web", "securityContext": null}],
                }),
                &[],
            ),
            case(
                "windows host process, runAsNonRoot unset",
                json!({
                    "os": {"name": "windows"},
                    "hostNetwork": true,
                    "securityContext": {"seccompProfile": null, "runAsNonRoot": null},
                    "containers": [{"name": "web", "securityContext": {"windowsOptions": {"hostProcess": true}}}],
                }),
                &[
                    ("hostNamespaces", Baseline, "spec.hostNetwork", "true"),
                    (
                        "windowsHostProcess",
                        Baseline,
                        "spec.containers[web].securityContext.windowsOptions.hostProcess",
                        "true",
                    ),
                    (
                        "runAsNonRoot",
                        Restricted,
                        "spec.containers[web].securityContext.runAsNonRoot",
                        "unset",
                    ),
                ],
            ),
        ],
    );
}

#[test]
fn an_unconfigured_pod_fails_only_restricted() {
    let c = case(
        "nothing set",
        json!({"securityContext": null, "containers": [{"name": "web", "securityContext": null}]}),
        &[],
    );
    let (spec, meta) = pod(&c);
    assert_eq!(violations(&spec, &meta, Baseline, LATEST), []);
    let got: Vec<_> = violations(&spec, &meta, Restricted, LATEST)
        .into_iter()
        .map(|v| (v.control, v.level, v.value))
        .collect();
    let unset = || "unset".to_owned();
    assert_eq!(
        got,
        [
            ("allowPrivilegeEscalation", Restricted, unset()),
            ("capabilities_restricted", Restricted, unset()),
            ("runAsNonRoot", Restricted, unset()),
            ("seccompProfile_restricted", Restricted, unset()),
        ]
    );
}

#[test]
fn controls_are_listed_as_the_admission_plugin_orders_them() {
    let ids = |level| {
        CONTROLS
            .iter()
            .filter(move |c| c.level == level)
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    for level in [Baseline, Restricted] {
        let mut sorted = ids(level);
        sorted.sort_unstable();
        assert_eq!(ids(level), sorted);
    }
    let levels: Vec<_> = CONTROLS.iter().map(|c| c.level).collect();
    assert!(levels.is_sorted());
    assert_eq!(CONTROLS.len(), 19);
    assert!(CONTROLS.iter().all(|c| c.level != Privileged));
}

#[test]
fn levels_are_ordered() {
    assert_eq!(Level::ALL, [Privileged, Baseline, Restricted]);
    assert!(Privileged < Baseline && Baseline < Restricted);
}

/// A pod and the controls it violates at `restricted` at each policy version given.
struct Gate {
    name: &'static str,
    /// Merged into [`restricted_pod`].
    spec: Value,
    annotations: &'static [(&'static str, &'static str)],
    at: &'static [(u32, &'static [&'static str])],
}

fn gate(name: &'static str, spec: Value, at: &'static [(u32, &'static [&'static str])]) -> Gate {
    Gate {
        name,
        spec,
        annotations: &[],
        at,
    }
}

/// Each rule that changed, on both sides of the version it changed at (each check's
/// `Versions: []VersionedCheck{{MinimumVersion: ...}}` in the plugin's policy/check_*.go).
#[test]
fn rules_change_at_the_versions_the_plugin_changes_them() {
    let sysctl =
        |name: &str| json!({"securityContext": {"sysctls": [{"name": name, "value": "1"}]}});
    let user_ns = |sc: Value| json!({"hostUsers": false, "containers": [{"name": "web", "securityContext": sc}]});
    let windows = json!({
        "os": {"name": "windows"},
        "securityContext": {"seccompProfile": null},
        "containers": [{"name": "web", "securityContext": null}],
    });
    let gates = [
        gate(
            "reserved ports sysctl",
            sysctl("net.ipv4.ip_local_reserved_ports"),
            &[(26, &["sysctls"]), (27, &[])],
        ),
        gate(
            "keepalive sysctl",
            sysctl("net.ipv4.tcp_keepalive_time"),
            &[(28, &["sysctls"]), (29, &[])],
        ),
        gate(
            "fin timeout sysctl",
            sysctl("net.ipv4.tcp_fin_timeout"),
            &[(28, &["sysctls"]), (29, &[])],
        ),
        gate(
            "tcp_rmem sysctl",
            sysctl("net.ipv4.tcp_rmem"),
            &[(31, &["sysctls"]), (32, &[]), (LATEST, &[])],
        ),
        gate(
            "v1.37's sysctl, newer versions judged as the newest known",
            sysctl("net.ipv4.tcp_slow_start_after_idle"),
            &[
                (LATEST, &["sysctls"]),
                (37, &["sysctls"]),
                (u32::MAX, &["sysctls"]),
            ],
        ),
        gate(
            "container_engine_t",
            json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}),
            &[(30, &["seLinuxOptions"]), (31, &[])],
        ),
        gate(
            "host probe",
            json!({"containers": [{"name": "web", "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}}]}),
            &[(33, &[]), (34, &["hostProbesAndHostLifecycle"])],
        ),
        gate(
            "Unmasked /proc in a user namespace",
            user_ns(json!({"procMount": "Unmasked"})),
            &[(34, &["procMount"]), (35, &["procMount_restricted"])],
        ),
        gate(
            "runAsNonRoot false in a user namespace",
            user_ns(json!({"runAsNonRoot": false})),
            &[(34, &["runAsNonRoot"]), (35, &[])],
        ),
        gate(
            "root in a user namespace",
            user_ns(json!({"runAsUser": 0})),
            &[(22, &[]), (34, &["runAsUser"]), (35, &[])],
        ),
        gate(
            "root",
            web(json!({"runAsUser": 0})),
            &[(22, &[]), (23, &["runAsUser"]), (LATEST, &["runAsUser"])],
        ),
        gate(
            "no drop ALL",
            web(json!({"capabilities": null})),
            &[(21, &[]), (22, &["capabilities_restricted"])],
        ),
        gate(
            "adds a default capability",
            web(json!({"capabilities": {"add": ["CHOWN"]}})),
            &[(21, &[]), (22, &["capabilities_restricted"])],
        ),
        gate(
            "adds SYS_ADMIN",
            web(json!({"capabilities": {"add": ["SYS_ADMIN"]}})),
            &[
                (21, &["capabilities_baseline"]),
                (22, &["capabilities_baseline"]),
            ],
        ),
        gate(
            "windows pod without Linux fields",
            windows,
            &[
                (
                    24,
                    &[
                        "allowPrivilegeEscalation",
                        "capabilities_restricted",
                        "seccompProfile_restricted",
                    ],
                ),
                (25, &[]),
            ],
        ),
        gate(
            "no seccomp profile",
            json!({"securityContext": {"seccompProfile": null}}),
            &[(18, &[]), (19, &["seccompProfile_restricted"])],
        ),
        gate(
            "unconfined seccomp field",
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            &[(18, &[]), (19, &["seccompProfile_baseline"])],
        ),
        Gate {
            name: "unconfined seccomp annotations",
            spec: json!({"securityContext": {"seccompProfile": null}}),
            annotations: &[
                ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
                ("container.seccomp.security.alpha.kubernetes.io/web", ""),
                (
                    "container.seccomp.security.alpha.kubernetes.io/gone",
                    "unconfined",
                ),
            ],
            at: &[
                (18, &["seccompProfile_baseline"]),
                (19, &["seccompProfile_restricted"]),
            ],
        },
        Gate {
            name: "confining seccomp annotations",
            spec: json!({"securityContext": {"seccompProfile": null}}),
            annotations: &[
                ("seccomp.security.alpha.kubernetes.io/pod", "docker/default"),
                (
                    "container.seccomp.security.alpha.kubernetes.io/web",
                    "localhost/a.json",
                ),
            ],
            at: &[(18, &[])],
        },
        gate(
            "allowPrivilegeEscalation unset",
            web(json!({"allowPrivilegeEscalation": null})),
            &[(7, &[]), (8, &["allowPrivilegeEscalation"])],
        ),
        gate(
            "the restricted pod",
            json!({}),
            &[(0, &[]), (23, &[]), (LATEST, &[])],
        ),
    ];
    for g in &gates {
        let c = Case {
            name: g.name,
            spec: g.spec.clone(),
            annotations: g.annotations,
            expect: &[],
        };
        let (spec, meta) = pod(&c);
        for &(version, want) in g.at {
            let mut got: Vec<_> = violations(&spec, &meta, Restricted, version)
                .iter()
                .map(|v| v.control)
                .collect();
            got.dedup();
            assert_eq!(got, want, "{} at v1.{version}", g.name);
            // At baseline, only the baseline controls of those.
            let baseline: Vec<_> = violations(&spec, &meta, Baseline, version)
                .into_iter()
                .map(|v| v.level)
                .collect();
            assert!(baseline.iter().all(|&l| l == Baseline), "{}", g.name);
        }
    }
}

#[test]
fn the_unconfined_seccomp_annotations_are_named() {
    let c = Case {
        name: "annotations",
        spec: json!({"securityContext": {"seccompProfile": null}}),
        annotations: &[
            ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
            ("container.seccomp.security.alpha.kubernetes.io/web", ""),
        ],
        expect: &[],
    };
    let (spec, meta) = pod(&c);
    let got: Vec<_> = violations(&spec, &meta, Baseline, 18)
        .into_iter()
        .map(|v| (v.field, v.value))
        .collect();
    let want = [
        (
            "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
            "unconfined",
        ),
        (
            "metadata.annotations[container.seccomp.security.alpha.kubernetes.io/web]",
            "",
        ),
    ]
    .map(|(f, v)| (f.to_owned(), v.to_owned()));
    assert_eq!(got, want);
}

#[test]
fn controls_exist_from_the_versions_the_plugin_added_them() {
    let since: Vec<_> = CONTROLS
        .iter()
        .filter(|c| c.since > 0)
        .map(|c| (c.id, c.since))
        .collect();
    assert_eq!(
        since,
        [
            ("hostProbesAndHostLifecycle", 34),
            ("allowPrivilegeEscalation", 8),
            ("capabilities_restricted", 22),
            ("procMount_restricted", 35),
            ("runAsUser", 23),
            ("seccompProfile_restricted", 19),
        ]
    );
    assert_eq!(POLICY_VERSION, format!("v1.{LATEST}"));
    assert!(CONTROLS.iter().all(|c| c.since <= LATEST));
}
