//! The Pod Security Standards, evaluated by kubepki itself: which controls of the baseline and
//! restricted profiles a pod violates, with the same verdict as the PodSecurity admission plugin
//! at a given policy version, so that the answer does not depend on whether the API server has
//! that plugin. The policy is versioned as the plugin versions its checks (each check's
//! `MinimumVersion`s): a control exists from [`Control::since`], and some rules changed later
//! (the sysctls and SELinux types allowed, the relaxations for pods with their own user
//! namespace, the exemption of Windows pods). Versions are minors of Kubernetes 1.x; the newest
//! known is [`LATEST`] ([`POLICY_VERSION`]), what `latest` means on the newest released API
//! server, and a newer one is judged as it.
//!
//! Each control reports every offending field, not just the first, and attributes it to the
//! lowest level that forbids it: a capability outside the default set is a `capabilities_baseline`
//! violation even when evaluating at `restricted`, where the admission plugin would name its
//! stricter `capabilities_restricted` check instead. So the violations at `restricted` always
//! include those at `baseline`, and a pod is rejected at a level exactly when it has a violation
//! at or below it. (From policy v1.25 the admission plugin's restricted checks for capabilities and
//! seccomp exempt Windows pods wholesale, so it admits at `restricted` a Windows pod that adds a capability
//! outside the default set or sets an unconfined seccomp profile, which `baseline` rejects; the
//! API server refuses both fields on Windows pods, so no such pod exists to be judged.)
//!
//! Init and ephemeral containers are judged like the others. Where a field exists at both the pod
//! and the container level, the pod-level value is judged on its own, and a container's own value
//! takes precedence over it where the rule requires a value to be set.

use std::fmt;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EphemeralContainer, HTTPGetAction, Lifecycle,
    PodSecurityContext, PodSpec, Probe, SecurityContext, TCPSocketAction, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The newest policy version implemented, as the minor of the Kubernetes release that shipped
/// it: the newest released one, 1.36.
pub const LATEST: u32 = 36;

/// [`LATEST`] as the `-version` labels spell it.
pub const POLICY_VERSION: &str = "v1.36";

named_enum! {
    /// A Pod Security Standards profile, from the least to the most restrictive, named as the
    /// `pod-security.kubernetes.io/*` namespace labels spell it.
    pub enum Level ("Pod Security Standards level", error UnknownLevel) {
        Privileged = "privileged",
        Baseline = "baseline",
        Restricted = "restricted",
    }
}

/// One field of a pod that a control forbids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The control's id, as the admission plugin names its check (`hostNamespaces`, ...).
    pub control: &'static str,
    /// The lowest level that forbids this value.
    pub level: Level,
    /// Where the value is, containers named by name:
    /// `spec.containers[web].securityContext.privileged`.
    pub field: String,
    /// The offending value; `unset` where the rule requires a value and none is set.
    pub value: String,
}

/// A control of the Pod Security Standards.
pub struct Control {
    /// The admission plugin's name for it.
    pub id: &'static str,
    /// The audit's finding id for a pod that violates it: `PSS-`, the level, then the id in
    /// upper-case words joined by `-`, less the level's name where the id repeats it
    /// (`capabilities_baseline`, `restrictedVolumes`). Stable API, like every finding id.
    pub finding: &'static str,
    /// The lowest level that enforces it.
    pub level: Level,
    /// The first policy version that has it.
    pub since: u32,
    /// The rule, in one sentence, with the policy versions at which it changed.
    pub rule: &'static str,
    check: fn(&Pod<'_>, &mut Out<'_>),
}

/// Every control, in the order they report: baseline, then restricted, each sorted by id.
pub static CONTROLS: &[Control] = &[
    Control {
        id: "appArmorProfile",
        finding: "PSS-BASELINE-APP-ARMOR-PROFILE",
        level: Level::Baseline,
        since: 0,
        rule: "AppArmor profiles may only be RuntimeDefault or Localhost (annotations: \
               runtime/default or localhost/*); the default profile must not be disabled.",
        check: app_armor_profile,
    },
    Control {
        id: "capabilities_baseline",
        finding: "PSS-BASELINE-CAPABILITIES",
        level: Level::Baseline,
        since: 0,
        rule: "Containers may add only capabilities of the runtime's default set: AUDIT_WRITE, \
               CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, \
               SETGID, SETPCAP, SETUID and SYS_CHROOT.",
        check: capabilities_baseline,
    },
    Control {
        id: "hostNamespaces",
        finding: "PSS-BASELINE-HOST-NAMESPACES",
        level: Level::Baseline,
        since: 0,
        rule: "Pods must not share the host's network, PID or IPC namespace.",
        check: host_namespaces,
    },
    Control {
        id: "hostPathVolumes",
        finding: "PSS-BASELINE-HOST-PATH-VOLUMES",
        level: Level::Baseline,
        since: 0,
        rule: "Pods must not mount hostPath volumes.",
        check: host_path_volumes,
    },
    Control {
        id: "hostPorts",
        finding: "PSS-BASELINE-HOST-PORTS",
        level: Level::Baseline,
        since: 0,
        rule: "Containers must not bind host ports.",
        check: host_ports,
    },
    Control {
        id: "hostProbesAndHostLifecycle",
        finding: "PSS-BASELINE-HOST-PROBES-AND-HOST-LIFECYCLE",
        level: Level::Baseline,
        since: 34,
        rule: "From policy v1.34, probes and lifecycle handlers must not name a host: they may \
               only reach the pod itself.",
        check: host_probes_and_host_lifecycle,
    },
    Control {
        id: "privileged",
        finding: "PSS-BASELINE-PRIVILEGED",
        level: Level::Baseline,
        since: 0,
        rule: "Containers must not run privileged.",
        check: privileged,
    },
    Control {
        id: "procMount",
        finding: "PSS-BASELINE-PROC-MOUNT",
        level: Level::Baseline,
        since: 0,
        rule: "Containers must keep the default masked /proc, unless (from policy v1.35) the pod \
               has its own user namespace (hostUsers: false).",
        check: proc_mount_baseline,
    },
    Control {
        id: "seLinuxOptions",
        finding: "PSS-BASELINE-SE-LINUX-OPTIONS",
        level: Level::Baseline,
        since: 0,
        rule: "SELinux options may set no user or role, and only the types container_t, \
               container_init_t, container_kvm_t and (from policy v1.31) container_engine_t.",
        check: se_linux_options,
    },
    Control {
        id: "seccompProfile_baseline",
        finding: "PSS-BASELINE-SECCOMP-PROFILE",
        level: Level::Baseline,
        since: 0,
        rule: "Seccomp profiles, where set, may only be RuntimeDefault or Localhost (before \
               policy v1.19, the seccomp annotations: runtime/default, docker/default or \
               localhost/*).",
        check: seccomp_profile_baseline,
    },
    Control {
        id: "sysctls",
        finding: "PSS-BASELINE-SYSCTLS",
        level: Level::Baseline,
        since: 0,
        rule: "Pods may set only the namespaced, isolated sysctls: kernel.shm_rmid_forced, \
               net.ipv4.ip_local_port_range, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range \
               and net.ipv4.ip_unprivileged_port_start; from policy v1.27 also \
               net.ipv4.ip_local_reserved_ports; from v1.29 net.ipv4.tcp_keepalive_time, \
               net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl and \
               net.ipv4.tcp_keepalive_probes; from v1.32 net.ipv4.tcp_rmem and net.ipv4.tcp_wmem.",
        check: sysctls,
    },
    Control {
        id: "windowsHostProcess",
        finding: "PSS-BASELINE-WINDOWS-HOST-PROCESS",
        level: Level::Baseline,
        since: 0,
        rule: "Pods and containers must not run as Windows HostProcess containers.",
        check: windows_host_process,
    },
    Control {
        id: "allowPrivilegeEscalation",
        finding: "PSS-RESTRICTED-ALLOW-PRIVILEGE-ESCALATION",
        level: Level::Restricted,
        since: 8,
        rule: "From policy v1.8, containers must set allowPrivilegeEscalation: false (from \
               v1.25, those of Linux pods only).",
        check: allow_privilege_escalation,
    },
    Control {
        id: "capabilities_restricted",
        finding: "PSS-RESTRICTED-CAPABILITIES",
        level: Level::Restricted,
        since: 22,
        rule: "From policy v1.22, containers must drop ALL capabilities and may add back only \
               NET_BIND_SERVICE (from v1.25, those of Linux pods only).",
        check: capabilities_restricted,
    },
    Control {
        id: "procMount_restricted",
        finding: "PSS-RESTRICTED-PROC-MOUNT",
        level: Level::Restricted,
        since: 35,
        rule: "From policy v1.35, containers must keep the default masked /proc even in a user \
               namespace (before, baseline forbade it everywhere).",
        check: proc_mount_restricted,
    },
    Control {
        id: "restrictedVolumes",
        finding: "PSS-RESTRICTED-VOLUMES",
        level: Level::Restricted,
        since: 0,
        rule: "Volumes may only be configMap, csi, downwardAPI, emptyDir, ephemeral, image, \
               persistentVolumeClaim, projected or secret.",
        check: restricted_volumes,
    },
    Control {
        id: "runAsNonRoot",
        finding: "PSS-RESTRICTED-RUN-AS-NON-ROOT",
        level: Level::Restricted,
        since: 0,
        rule: "The pod, or every container, must set runAsNonRoot: true, and none may set it \
               false, unless (from policy v1.35) the pod has its own user namespace (hostUsers: \
               false).",
        check: run_as_non_root,
    },
    Control {
        id: "runAsUser",
        finding: "PSS-RESTRICTED-RUN-AS-USER",
        level: Level::Restricted,
        since: 23,
        rule: "From policy v1.23, neither the pod nor a container may set runAsUser: 0, unless \
               (from v1.35) the pod has its own user namespace (hostUsers: false).",
        check: run_as_user,
    },
    Control {
        id: "seccompProfile_restricted",
        finding: "PSS-RESTRICTED-SECCOMP-PROFILE",
        level: Level::Restricted,
        since: 19,
        rule: "From policy v1.19, pods must set a seccomp profile (RuntimeDefault or \
               Localhost), at the pod level or on every container (from v1.25, Linux pods only).",
        check: seccomp_profile_restricted,
    },
];

/// Every field of the pod that the controls of `level` and below forbid at policy `version`
/// (a minor of Kubernetes 1.x; newer than [`LATEST`] is judged as [`LATEST`], so pass
/// [`LATEST`] for `latest`), in the order of [`CONTROLS`]. Empty means the admission plugin
/// would admit the pod at `level` and `version`; `privileged` forbids nothing.
pub fn violations(
    spec: &PodSpec,
    metadata: &ObjectMeta,
    level: Level,
    version: u32,
) -> Vec<Violation> {
    let pod = Pod::new(spec, metadata, version.min(LATEST));
    let mut found = Vec::new();
    let applies = |c: &&Control| c.level <= level && c.since <= pod.version;
    for control in CONTROLS.iter().filter(applies) {
        (control.check)(
            &pod,
            &mut Out {
                found: &mut found,
                control: control.id,
                level: control.level,
            },
        );
    }
    found
}

const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The sysctls allowed, each with the policy version that allows it (check_sysctls.go:
/// sysctlsAllowedV1Dot0, V1Dot27, V1Dot29, V1Dot32). Policy v1.37 adds
/// net.ipv4.tcp_slow_start_after_idle and net.ipv4.tcp_notsent_lowat; no released API server
/// accepts them yet.
const SAFE_SYSCTLS: [(&str, u32); 12] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

/// The SELinux types allowed, each with the policy version that allows it
/// (check_seLinuxOptions.go: selinuxAllowedTypes1_0, 1_31).
const SELINUX_TYPES: [(&str, u32); 5] = [
    ("", 0),
    ("container_t", 0),
    ("container_init_t", 0),
    ("container_kvm_t", 0),
    ("container_engine_t", 31),
];

/// Whether `name` is in one of those lists at policy `version`.
fn allowed_at(list: &[(&str, u32)], name: &str, version: u32) -> bool {
    list.iter().any(|&(n, since)| n == name && since <= version)
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Reports the seccomp or AppArmor profile types (`profile`: the field) that do not confine:
/// both kinds allow only the same two.
fn unconfining_profiles(out: &mut Out<'_>, types: Vec<(String, &String)>, profile: &str) {
    for (at, kind) in types {
        if !matches!(kind.as_str(), "RuntimeDefault" | "Localhost") {
            out.push(format!("{at}.{profile}.type"), kind);
        }
    }
}

fn is_true(v: Option<&bool>) -> bool {
    v == Some(&true)
}

/// The pod as the controls see it: every container of all three kinds in one list, and the
/// policy version it is judged at.
struct Pod<'a> {
    spec: &'a PodSpec,
    meta: &'a ObjectMeta,
    containers: Vec<ContainerView<'a>>,
    version: u32,
}

/// What the controls read of a container; regular, init and ephemeral containers are
/// different types with these same fields.
struct ContainerView<'a> {
    name: &'a str,
    /// `spec.containers[web]`.
    at: String,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    probes: [(&'static str, Option<&'a Probe>); 3],
    lifecycle: Option<&'a Lifecycle>,
}

impl<'a> ContainerView<'a> {
    fn capabilities(&self) -> Option<&'a Capabilities> {
        self.sc.and_then(|s| s.capabilities.as_ref())
    }
}

macro_rules! container_view {
    ($list:literal, $c:expr) => {
        ContainerView {
            name: $c.name.as_str(),
            at: format!(concat!("spec.", $list, "[{}]"), $c.name),
            sc: $c.security_context.as_ref(),
            ports: $c.ports.as_deref().unwrap_or_default(),
            probes: [
                ("livenessProbe", $c.liveness_probe.as_ref()),
                ("readinessProbe", $c.readiness_probe.as_ref()),
                ("startupProbe", $c.startup_probe.as_ref()),
            ],
            lifecycle: $c.lifecycle.as_ref(),
        }
    };
}

impl<'a> Pod<'a> {
    fn new(spec: &'a PodSpec, meta: &'a ObjectMeta, version: u32) -> Self {
        let init = spec.init_containers.iter().flatten();
        let regular = spec.containers.iter();
        let ephemeral = spec.ephemeral_containers.iter().flatten();
        let containers = init
            .map(|c: &Container| container_view!("initContainers", c))
            .chain(regular.map(|c| container_view!("containers", c)))
            .chain(
                ephemeral.map(|c: &EphemeralContainer| container_view!("ephemeralContainers", c)),
            )
            .collect();
        Pod {
            spec,
            meta,
            containers,
            version,
        }
    }

    fn security_context(&self) -> Option<&'a PodSecurityContext> {
        self.spec.security_context.as_ref()
    }

    /// `spec.os.name: windows`, from policy v1.25: the Linux-only restricted rules do not
    /// apply (the API server rejects Linux-only security fields on such pods anyway).
    fn windows(&self) -> bool {
        self.version >= 25 && self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }

    /// `spec.hostUsers: false`, from policy v1.35: the pod has its own user namespace, so root
    /// in it and an unmasked /proc are not root and /proc of the host. (Older policies relaxed
    /// only behind the alpha UserNamespacesPodSecurityStandards feature gate, off by default.)
    fn user_namespace(&self) -> bool {
        self.version >= 35 && self.spec.host_users == Some(false)
    }

    /// A field that both the pod's and the containers' security contexts have: the pod's value
    /// first, then each container's own, each with the path of its security context.
    fn setters<T: ?Sized>(
        &self,
        at_pod: impl Fn(&'a PodSecurityContext) -> Option<&'a T>,
        at_container: impl Fn(&'a SecurityContext) -> Option<&'a T>,
    ) -> Vec<(String, &'a T)> {
        let pod = self
            .security_context()
            .and_then(at_pod)
            .map(|v| ("spec.securityContext".to_owned(), v));
        let containers = self.containers.iter().filter_map(|c| {
            let v = c.sc.and_then(&at_container)?;
            Some((format!("{}.securityContext", c.at), v))
        });
        pod.into_iter().chain(containers).collect()
    }
}

/// Collects the violations of one control.
struct Out<'v> {
    found: &'v mut Vec<Violation>,
    control: &'static str,
    level: Level,
}

impl Out<'_> {
    fn push(&mut self, field: String, value: impl fmt::Display) {
        self.found.push(Violation {
            control: self.control,
            level: self.level,
            field,
            value: value.to_string(),
        });
    }
}

fn app_armor_profile(pod: &Pod<'_>, out: &mut Out<'_>) {
    let types = pod.setters(
        |s| s.app_armor_profile.as_ref().map(|p| &p.type_),
        |s| s.app_armor_profile.as_ref().map(|p| &p.type_),
    );
    unconfining_profiles(out, types, "appArmorProfile");
    // Any key with the prefix counts, whether or not it names a container of the pod.
    for (key, value) in pod.meta.annotations.iter().flatten() {
        let allowed =
            value.is_empty() || value == "runtime/default" || value.starts_with("localhost/");
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX) && !allowed {
            out.push(format!("metadata.annotations[{key}]"), value);
        }
    }
}

/// The capabilities a container adds, with their field.
fn added_capabilities<'a>(pod: &Pod<'a>) -> impl Iterator<Item = (String, &'a str)> {
    pod.containers.iter().flat_map(|c| {
        let add = c.capabilities().and_then(|k| k.add.as_deref());
        let at = format!("{}.securityContext.capabilities.add", c.at);
        add.unwrap_or_default()
            .iter()
            .map(move |cap| (at.clone(), cap.as_str()))
    })
}

fn capabilities_baseline(pod: &Pod<'_>, out: &mut Out<'_>) {
    for (at, cap) in added_capabilities(pod) {
        if !BASELINE_CAPABILITIES.contains(&cap) {
            out.push(at, cap);
        }
    }
}

fn capabilities_restricted(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.windows() {
        return;
    }
    for c in &pod.containers {
        let drop = c.capabilities().and_then(|k| k.drop.as_deref());
        if !drop.unwrap_or_default().iter().any(|d| d == "ALL") {
            let value = match drop {
                None => "unset".to_owned(),
                Some(list) => format!("[{}]", list.join(", ")),
            };
            out.push(format!("{}.securityContext.capabilities.drop", c.at), value);
        }
    }
    // Capabilities outside the default set are capabilities_baseline's.
    for (at, cap) in added_capabilities(pod) {
        if cap != "NET_BIND_SERVICE" && BASELINE_CAPABILITIES.contains(&cap) {
            out.push(at, cap);
        }
    }
}

fn host_namespaces(pod: &Pod<'_>, out: &mut Out<'_>) {
    let spec = pod.spec;
    let namespaces = [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ];
    for (name, value) in namespaces {
        if is_true(value.as_ref()) {
            out.push(format!("spec.{name}"), true);
        }
    }
}

fn host_path_volumes(pod: &Pod<'_>, out: &mut Out<'_>) {
    for v in pod.spec.volumes.iter().flatten() {
        if let Some(host_path) = &v.host_path {
            out.push(
                format!("spec.volumes[{}].hostPath.path", v.name),
                &host_path.path,
            );
        }
    }
}

fn host_ports(pod: &Pod<'_>, out: &mut Out<'_>) {
    for c in &pod.containers {
        for (i, port) in c.ports.iter().enumerate() {
            match port.host_port {
                None | Some(0) => {}
                Some(p) => out.push(format!("{}.ports[{i}].hostPort", c.at), p),
            }
        }
    }
}

fn host_probes_and_host_lifecycle(pod: &Pod<'_>, out: &mut Out<'_>) {
    // Probes and handlers carry the same two host-bearing actions.
    let mut check = |at: String, http: Option<&HTTPGetAction>, tcp: Option<&TCPSocketAction>| {
        let hosts = [
            ("httpGet", http.and_then(|a| a.host.as_deref())),
            ("tcpSocket", tcp.and_then(|a| a.host.as_deref())),
        ];
        for (action, host) in hosts {
            if let Some(host) = host.filter(|h| !h.is_empty()) {
                out.push(format!("{at}.{action}.host"), host);
            }
        }
    };
    for c in &pod.containers {
        for (name, probe) in c.probes {
            if let Some(p) = probe {
                check(
                    format!("{}.{name}", c.at),
                    p.http_get.as_ref(),
                    p.tcp_socket.as_ref(),
                );
            }
        }
        let handlers = c
            .lifecycle
            .map(|l| [("postStart", &l.post_start), ("preStop", &l.pre_stop)]);
        for (name, handler) in handlers.into_iter().flatten() {
            if let Some(h) = handler {
                let at = format!("{}.lifecycle.{name}", c.at);
                check(at, h.http_get.as_ref(), h.tcp_socket.as_ref());
            }
        }
    }
}

fn privileged(pod: &Pod<'_>, out: &mut Out<'_>) {
    for c in &pod.containers {
        if is_true(c.sc.and_then(|s| s.privileged.as_ref())) {
            out.push(format!("{}.securityContext.privileged", c.at), true);
        }
    }
}

/// Every container's procMount other than `Default`.
fn unmasked_proc_mounts(pod: &Pod<'_>, out: &mut Out<'_>) {
    for c in &pod.containers {
        match c.sc.and_then(|s| s.proc_mount.as_deref()) {
            None | Some("Default") => {}
            Some(other) => out.push(format!("{}.securityContext.procMount", c.at), other),
        }
    }
}

fn proc_mount_baseline(pod: &Pod<'_>, out: &mut Out<'_>) {
    if !pod.user_namespace() {
        unmasked_proc_mounts(pod, out);
    }
}

// Without a user namespace the baseline control has already reported them.
fn proc_mount_restricted(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.user_namespace() {
        unmasked_proc_mounts(pod, out);
    }
}

fn se_linux_options(pod: &Pod<'_>, out: &mut Out<'_>) {
    let options = pod.setters(
        |s| s.se_linux_options.as_ref(),
        |s| s.se_linux_options.as_ref(),
    );
    for (at, opts) in options {
        let kind = opts.type_.as_deref().unwrap_or_default();
        if !allowed_at(&SELINUX_TYPES, kind, pod.version) {
            out.push(format!("{at}.seLinuxOptions.type"), kind);
        }
        for (name, value) in [("user", &opts.user), ("role", &opts.role)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                out.push(format!("{at}.seLinuxOptions.{name}"), v);
            }
        }
    }
}

// Policy v1.19 judges the fields, which came then, instead of the annotations; the kubelet no
// longer applies the annotations.
fn seccomp_profile_baseline(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.version < 19 {
        return seccomp_annotations(pod, out);
    }
    let types = pod.setters(
        |s| s.seccomp_profile.as_ref().map(|p| &p.type_),
        |s| s.seccomp_profile.as_ref().map(|p| &p.type_),
    );
    unconfining_profiles(out, types, "seccompProfile");
}

/// The seccomp annotations of the pod and of its containers (by name) that do not confine.
fn seccomp_annotations(pod: &Pod<'_>, out: &mut Out<'_>) {
    let Some(annotations) = pod.meta.annotations.as_ref() else {
        return;
    };
    let mut check = |key: &str| {
        let confines = |v: &&String| {
            v.as_str() == "runtime/default"
                || v.as_str() == "docker/default"
                || v.starts_with("localhost/")
        };
        if let Some(value) = annotations.get(key).filter(|v| !confines(v)) {
            out.push(format!("metadata.annotations[{key}]"), value);
        }
    };
    check(SECCOMP_POD_ANNOTATION);
    for c in &pod.containers {
        check(&format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name));
    }
}

fn seccomp_profile_restricted(pod: &Pod<'_>, out: &mut Out<'_>) {
    // A pod-level profile, even a forbidden one (that is seccompProfile_baseline's), covers
    // every container that sets none.
    let pod_set = pod
        .security_context()
        .is_some_and(|s| s.seccomp_profile.is_some());
    if pod.windows() || pod_set {
        return;
    }
    for c in &pod.containers {
        if c.sc.and_then(|s| s.seccomp_profile.as_ref()).is_none() {
            out.push(
                format!("{}.securityContext.seccompProfile.type", c.at),
                "unset",
            );
        }
    }
}

fn sysctls(pod: &Pod<'_>, out: &mut Out<'_>) {
    let sysctls = pod.security_context().and_then(|s| s.sysctls.as_deref());
    for (i, sysctl) in sysctls.unwrap_or_default().iter().enumerate() {
        if !allowed_at(&SAFE_SYSCTLS, &sysctl.name, pod.version) {
            out.push(
                format!("spec.securityContext.sysctls[{i}].name"),
                &sysctl.name,
            );
        }
    }
}

fn windows_host_process(pod: &Pod<'_>, out: &mut Out<'_>) {
    let options = pod.setters(
        |s| s.windows_options.as_ref(),
        |s| s.windows_options.as_ref(),
    );
    for (at, opts) in options {
        if is_true(opts.host_process.as_ref()) {
            out.push(format!("{at}.windowsOptions.hostProcess"), true);
        }
    }
}

fn allow_privilege_escalation(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.windows() {
        return;
    }
    for c in &pod.containers {
        let value = c.sc.and_then(|s| s.allow_privilege_escalation);
        if value != Some(false) {
            let value = value.map_or("unset".to_owned(), |v| v.to_string());
            out.push(
                format!("{}.securityContext.allowPrivilegeEscalation", c.at),
                value,
            );
        }
    }
}

/// The name of a volume's source that the restricted profile forbids, if it is one; hostPath
/// is left to hostPathVolumes.
fn restricted_volume_type(v: &Volume) -> Option<&'static str> {
    let allowed = v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some();
    if allowed || v.host_path.is_some() {
        return None;
    }
    let named = [
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("rbd", v.rbd.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("cinder", v.cinder.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("flocker", v.flocker.is_some()),
        ("fc", v.fc.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("storageos", v.storageos.is_some()),
    ];
    // A source this model does not know (or none at all) is forbidden too: the list is an
    // allow-list.
    Some(
        named
            .into_iter()
            .find(|(_, set)| *set)
            .map_or("unknown", |(name, _)| name),
    )
}

fn restricted_volumes(pod: &Pod<'_>, out: &mut Out<'_>) {
    for v in pod.spec.volumes.iter().flatten() {
        if let Some(kind) = restricted_volume_type(v) {
            out.push(format!("spec.volumes[{}]", v.name), kind);
        }
    }
}

fn run_as_non_root(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.user_namespace() {
        return;
    }
    let at_pod = pod.security_context().and_then(|s| s.run_as_non_root);
    if at_pod == Some(false) {
        out.push("spec.securityContext.runAsNonRoot".to_owned(), false);
    }
    for c in &pod.containers {
        let own = c.sc.and_then(|s| s.run_as_non_root);
        // A container that sets nothing inherits the pod's value; a pod-level false is
        // reported above, once.
        let value = match (own, at_pod) {
            (Some(false), _) => "false",
            (None, None) => "unset",
            _ => continue,
        };
        out.push(format!("{}.securityContext.runAsNonRoot", c.at), value);
    }
}

fn run_as_user(pod: &Pod<'_>, out: &mut Out<'_>) {
    if pod.user_namespace() {
        return;
    }
    for (at, uid) in pod.setters(|s| s.run_as_user.as_ref(), |s| s.run_as_user.as_ref()) {
        if *uid == 0 {
            out.push(format!("{at}.runAsUser"), 0);
        }
    }
}

#[cfg(test)]
mod tests;
