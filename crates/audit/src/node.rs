//! The node-validation page ("Validating node setup"): the prerequisites the node-conformance
//! test checks that can be read from the node's files without running a container: the kernel
//! version, the cgroup version and its controllers, swap, the container runtime's endpoint and
//! the kubelet's version skew against the API server.
//!
//! Every check reads below a root directory laid out like `/` (`proc/`, `sys/`, the runtime's
//! socket), so that the audit passes `/` and the tests a temporary directory. A file that is
//! missing, empty or garbage never panics: each check documents what it reports then.
//!
//! The kernel minimum is a parameter; [`default_min_kernel`] chooses it from the cgroup
//! version, as Kubernetes' system validator (kubeadm's preflight and the node-conformance test)
//! does: 4.15 for cgroup v2, the first kernel whose cgroup v2 the kubelet can use, and 3.10 for
//! cgroup v1, the minimum of the v1.20-era nodes this audit is tested against.

use std::fmt;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::{Finding, Severity};

/// A kernel's `major.minor`, as in `5.15.0-91-generic`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// The version a `proc/sys/kernel/osrelease` line begins with (`4.15.0-20-generic`,
    /// `3.10.0-1160.el7.x86_64`, `6.1`), or `None` where it does not begin with
    /// `<digits>.<digits>`.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let (major, minor) = major_minor(release.trim())?;
        Some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The kernel the kubelet needs for cgroup v2.
pub const MIN_KERNEL_CGROUP_V2: KernelVersion = KernelVersion {
    major: 4,
    minor: 15,
};

/// The kernel the v1.20-era system validator requires (on cgroup v1).
pub const MIN_KERNEL_V1_20: KernelVersion = KernelVersion {
    major: 3,
    minor: 10,
};

/// The kernel minimum for a node on this cgroup version: [`MIN_KERNEL_CGROUP_V2`] on v2,
/// [`MIN_KERNEL_V1_20`] otherwise (v1, or not known).
pub fn default_min_kernel(cgroup: Option<CgroupVersion>) -> KernelVersion {
    match cgroup {
        Some(CgroupVersion::V2) => MIN_KERNEL_CGROUP_V2,
        _ => MIN_KERNEL_V1_20,
    }
}

/// Which cgroup hierarchy the node mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The controllers the kubelet needs on cgroup v2 (`cgroup.controllers`); `io` is listed in
/// [`CGROUP_V2_OPTIONAL`], as the kubelet runs without it but cannot then limit I/O.
pub const CGROUP_V2_REQUIRED: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];
pub const CGROUP_V2_OPTIONAL: [&str; 1] = ["io"];

/// The controllers the kubelet needs on cgroup v1 (enabled in `proc/cgroups`).
pub const CGROUP_V1_REQUIRED: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer",
];

const CGROUP_V2_CONTROLLERS: &str = "sys/fs/cgroup/cgroup.controllers";
const CGROUP_V1_TABLE: &str = "proc/cgroups";
const OSRELEASE: &str = "proc/sys/kernel/osrelease";
const SWAPS: &str = "proc/swaps";

const PAGE_KERNEL: &str = "Validating node setup: the node-conformance test checks the \
                           system's kernel against the minimum version Kubernetes supports.";
const PAGE_CGROUP: &str = "Validating node setup: the node-conformance test checks that the \
                           cgroup controllers the kubelet needs are enabled.";
const PAGE_SWAP: &str = "Validating node setup: the kubelet refuses to start on a node with \
                         swap on unless failSwapOn is false.";
const PAGE_RUNTIME: &str = "Validating node setup: the node needs a container runtime \
                            answering on the endpoint the kubelet is configured with.";
const PAGE_SKEW: &str = "Version skew policy: the kubelet must not be newer than the API \
                         server, and may be older by at most two minor versions (three from \
                         v1.28 on).";

/// What [`LocalNode::check`] is told about the kubelet's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// The kernel minimum; `None` chooses [`default_min_kernel`] for the node's cgroup version.
    pub min_kernel: Option<KernelVersion>,
    /// The kubelet's `failSwapOn` (its default is true): false allows swap.
    pub fail_swap_on: bool,
    /// The kubelet's `containerRuntimeEndpoint` (`unix:///run/containerd/containerd.sock` or
    /// a bare path); `None` skips the check.
    pub runtime_endpoint: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            min_kernel: None,
            fail_swap_on: true,
            runtime_endpoint: None,
        }
    }
}

/// What the node checks need of the kubelet's configuration: `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeletSettings {
    pub fail_swap_on: Option<bool>,
    pub runtime_endpoint: Option<String>,
}

/// The part of a KubeletConfiguration read here; the rest is ignored.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfigFile {
    fail_swap_on: Option<bool>,
    container_runtime_endpoint: Option<String>,
}

const PAGE_KUBELET_CONFIG: &str = "Validating node setup: the node's kubelet must be configured \
                                   readably, so that its settings can be validated.";

/// Reads the kubelet's `<dir>/config.yaml` (its KubeletConfiguration) and `<dir>/kubeadm-flags.env`
/// (the flags kubeadm passes it, which win over the file, as the kubelet's flags do). A missing
/// file says nothing; one that cannot be read or parsed is a `NODE-KUBELET-CONFIG` finding
/// (warning), and what it would have said stays unknown.
pub fn kubelet_settings(dir: &Path) -> (KubeletSettings, Vec<Finding>) {
    let mut settings = KubeletSettings::default();
    let mut findings = Vec::new();
    let mut bad = |path: &Path, what: String| {
        findings.push(Finding {
            id: "NODE-KUBELET-CONFIG",
            severity: Severity::Warning,
            object: path.display().to_string(),
            message: what,
            page: PAGE_KUBELET_CONFIG,
            fix: "repair the file (kubeadm writes it at join; `kubeadm upgrade node phase \
                  kubelet-config` writes config.yaml again)"
                .to_owned(),
        })
    };
    let config = dir.join("config.yaml");
    match read_text(&config) {
        Ok(None) => {}
        Ok(Some(text)) => match serde_saphyr::from_str::<Option<KubeletConfigFile>>(&text) {
            Ok(Some(c)) => {
                settings.fail_swap_on = c.fail_swap_on;
                settings.runtime_endpoint = c.container_runtime_endpoint;
            }
            Ok(None) => {}
            Err(e) => bad(
                &config,
                kubepki_pki::format::yaml::YamlError::new(&e).to_string(),
            ),
        },
        Err(e) => bad(&config, e),
    }
    let flags = dir.join("kubeadm-flags.env");
    match read_text(&flags) {
        Ok(None) => {}
        Ok(Some(text)) => {
            // systemd's EnvironmentFile keeps the last assignment of a variable.
            let words = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("KUBELET_KUBEADM_ARGS="))
                .next_back()
                .into_iter()
                .flat_map(|v| v.trim_matches(['"', '\'']).split_whitespace());
            let mut words = words.peekable();
            while let Some(word) = words.next() {
                let (name, value) = match word.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (word, None),
                };
                let flag = name.trim_start_matches('-');
                match flag {
                    "container-runtime-endpoint" => {
                        settings.runtime_endpoint = value
                            .or_else(|| words.next_if(|w| !w.starts_with('-')).map(str::to_owned))
                    }
                    // A Go bool flag takes its value only after `=`, parsed by strconv.ParseBool.
                    "fail-swap-on" => {
                        let off = ["0", "f", "F", "false", "FALSE", "False"];
                        settings.fail_swap_on =
                            Some(value.is_none_or(|v| !off.contains(&v.as_str())))
                    }
                    _ => {}
                }
            }
        }
        Err(e) => bad(&flags, e),
    }
    (settings, findings)
}

/// The socket path of a runtime endpoint as the kubelet reads it (Go's `url.Parse`, then the
/// URL's path for the `unix` scheme, compared case-insensitively): `unix:///run/x.sock` and
/// `unix:/run/x.sock` are `/run/x.sock`; in `unix://run/x.sock`, `run` is the host and the path
/// `/x.sock`. A bare path is used as it is. `None` for another scheme.
fn unix_path(endpoint: &str) -> Option<&str> {
    let Some((scheme, rest)) = endpoint.split_once(':') else {
        return Some(endpoint);
    };
    let is_scheme = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme || scheme.contains('/') {
        return Some(endpoint);
    }
    if !scheme.eq_ignore_ascii_case("unix") {
        return None;
    }
    Some(match rest.strip_prefix("//") {
        // An authority (host) up to the next `/`; the path is what follows it.
        Some(authority) => authority.find('/').map_or("", |i| &authority[i..]),
        None => rest,
    })
}

/// Connects to a unix socket, giving up after [`CONNECT_TIMEOUT`]: a hung runtime whose
/// listen queue is full would otherwise block the audit for good. Nothing is sent.
fn connect(path: &Path) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    // A connect still blocked when the audit ends goes with the process.
    std::thread::spawn(move || {
        let _ = tx.send(std::os::unix::net::UnixStream::connect(path).map(drop));
    });
    rx.recv_timeout(CONNECT_TIMEOUT).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
        ))
    })
}

/// How long the runtime's socket has to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A small text file's contents, `None` when it does not exist; the error says what is wrong.
fn read_text(path: &Path) -> Result<Option<String>, String> {
    match kubepki_pki::fsio::read_regular(path, 1 << 20) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "not UTF-8 text".to_owned()),
        Err(kubepki_pki::fsio::ReadFailure::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(kubepki_pki::fsio::ReadFailure::Io(e)) => Err(format!("cannot be read: {e}")),
        Err(kubepki_pki::fsio::ReadFailure::NotRegular) => Err("not a regular file".to_owned()),
        Err(kubepki_pki::fsio::ReadFailure::TooLarge(_)) => {
            Err("larger than 1 MiB; not a kubelet configuration".to_owned())
        }
    }
}

/// The node being audited: its name (for the findings' object, `node <name>`) and the root
/// its files are read below.
#[derive(Clone, Debug)]
pub struct LocalNode {
    name: String,
    root: PathBuf,
}

impl LocalNode {
    pub fn new(name: &str, root: impl Into<PathBuf>) -> LocalNode {
        LocalNode {
            name: name.to_owned(),
            root: root.into(),
        }
    }

    /// Every file check: kernel, cgroups, swap and, where given, the runtime endpoint.
    pub fn check(&self, options: &NodeOptions) -> Vec<Finding> {
        let cgroup = self.cgroup_version();
        let min = options.min_kernel.unwrap_or(default_min_kernel(cgroup));
        let mut findings: Vec<Finding> = self.kernel(min).into_iter().collect();
        findings.extend(self.cgroups());
        findings.extend(self.swap(options.fail_swap_on));
        if let Some(endpoint) = &options.runtime_endpoint {
            findings.extend(self.runtime_endpoint(endpoint));
        }
        findings
    }

    /// `NODE-KERNEL-TOO-OLD` (error) where `proc/sys/kernel/osrelease` is below `min`;
    /// `NODE-KERNEL-UNKNOWN` (warning) where it is missing or does not begin with a version.
    pub fn kernel(&self, min: KernelVersion) -> Option<Finding> {
        let release = self.read(OSRELEASE);
        let Some(version) = release.as_deref().and_then(KernelVersion::parse) else {
            let what = match &release {
                None => "cannot be read".to_owned(),
                Some(text) => format!("holds no kernel version: {:?}", text.trim()),
            };
            return Some(self.finding(
                "NODE-KERNEL-UNKNOWN",
                Severity::Warning,
                format!("{} {what}", self.show(OSRELEASE)),
                PAGE_KERNEL,
                format!("check the kernel by hand: it must be {min} or later"),
            ));
        };
        (version < min).then(|| {
            self.finding(
                "NODE-KERNEL-TOO-OLD",
                Severity::Error,
                format!(
                    "kernel {} (version {version}) is older than {min}",
                    release.unwrap_or_default().trim()
                ),
                PAGE_KERNEL,
                format!("upgrade the node's kernel to {min} or later"),
            )
        })
    }

    /// The cgroup version the node mounts: v2 where `sys/fs/cgroup/cgroup.controllers` exists,
    /// v1 where only `proc/cgroups` does, `None` where neither does.
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        if self.root.join(CGROUP_V2_CONTROLLERS).is_file() {
            Some(CgroupVersion::V2)
        } else if self.root.join(CGROUP_V1_TABLE).is_file() {
            Some(CgroupVersion::V1)
        } else {
            None
        }
    }

    /// `NODE-CGROUP-CONTROLLERS-MISSING` (error) naming the required controllers that are not
    /// available (v2: not listed in `cgroup.controllers`; v1: not in `proc/cgroups` with its
    /// enabled column 1, so an empty or garbage file misses them all);
    /// `NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING` (warning) for `io` on v2;
    /// `NODE-CGROUP-UNKNOWN` (warning) where neither file can be read.
    pub fn cgroups(&self) -> Vec<Finding> {
        let (file, available, required, optional): (_, Vec<String>, &[&str], &[&str]) =
            match self.cgroup_version() {
                Some(CgroupVersion::V2) => {
                    let text = self.read(CGROUP_V2_CONTROLLERS).unwrap_or_default();
                    let listed = text.split_whitespace().map(str::to_owned).collect();
                    (
                        CGROUP_V2_CONTROLLERS,
                        listed,
                        &CGROUP_V2_REQUIRED,
                        &CGROUP_V2_OPTIONAL,
                    )
                }
                Some(CgroupVersion::V1) => {
                    let text = self.read(CGROUP_V1_TABLE).unwrap_or_default();
                    (CGROUP_V1_TABLE, enabled_v1(&text), &CGROUP_V1_REQUIRED, &[])
                }
                None => {
                    return vec![
                        self.finding(
                            "NODE-CGROUP-UNKNOWN",
                            Severity::Warning,
                            format!(
                                "neither {} nor {} can be read",
                                self.show(CGROUP_V2_CONTROLLERS),
                                self.show(CGROUP_V1_TABLE)
                            ),
                            PAGE_CGROUP,
                            "mount the cgroup filesystem (v2 at /sys/fs/cgroup) and check its \
                         controllers by hand"
                                .to_owned(),
                        ),
                    ];
                }
            };
        let mut findings = Vec::new();
        for (id, severity, wanted) in [
            ("NODE-CGROUP-CONTROLLERS-MISSING", Severity::Error, required),
            (
                "NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING",
                Severity::Warning,
                optional,
            ),
        ] {
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|c| !available.iter().any(|a| a == c))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let missing = missing.join(", ");
            findings.push(self.finding(
                id,
                severity,
                format!("{} does not enable: {missing}", self.show(file)),
                PAGE_CGROUP,
                format!(
                    "enable the {missing} cgroup controllers (kernel configuration, boot \
                     parameters, or cgroup.subtree_control on v2)"
                ),
            ));
        }
        findings
    }

    /// `NODE-SWAP-ON` (error) where `proc/swaps` lists a swap area (any non-blank line but its
    /// `Filename …` header) and `fail_swap_on` is true. A missing or empty file is no swap, as
    /// on a kernel built without it.
    pub fn swap(&self, fail_swap_on: bool) -> Option<Finding> {
        if !fail_swap_on {
            return None;
        }
        let text = self.read(SWAPS)?;
        let areas: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Filename"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        (!areas.is_empty()).then(|| {
            self.finding(
                "NODE-SWAP-ON",
                Severity::Error,
                format!("swap is on: {}", areas.join(", ")),
                PAGE_SWAP,
                "turn swap off (swapoff -a, and remove it from /etc/fstab), or set the \
                 kubelet's failSwapOn to false where swap is intended"
                    .to_owned(),
            )
        })
    }

    /// The container runtime endpoint (`unix:///path` or a bare path, read below the root) is
    /// a socket that accepts a connection (nothing is sent). `NODE-RUNTIME-NOT-ANSWERING` (error)
    /// where it refuses, `NODE-RUNTIME-ENDPOINT-MISSING` (error) where nothing
    /// is there or the endpoint names no path, `NODE-RUNTIME-ENDPOINT-NOT-SOCKET` (error) where something else is, and
    /// `NODE-RUNTIME-ENDPOINT-UNCHECKED` (info) for an endpoint that is no unix socket
    /// (`tcp://`, `npipe://`).
    pub fn runtime_endpoint(&self, endpoint: &str) -> Option<Finding> {
        let path = match unix_path(endpoint) {
            Some(path) => path,
            None => {
                return Some(self.finding(
                    "NODE-RUNTIME-ENDPOINT-UNCHECKED",
                    Severity::Info,
                    format!("the runtime endpoint {endpoint} is no unix socket; not checked"),
                    PAGE_RUNTIME,
                    "check by hand that the container runtime answers on it".to_owned(),
                ));
            }
        };
        let shown = self.show(path);
        let metadata = if path.trim_start_matches('/').is_empty() {
            Err(std::io::Error::other("no path"))
        } else {
            fs::metadata(self.under_root(path))
        };
        let (id, message, fix) = match metadata {
            Err(e) => (
                "NODE-RUNTIME-ENDPOINT-MISSING",
                format!("the runtime endpoint {shown} cannot be read: {e}"),
                "start the container runtime, or point the kubelet's \
                 containerRuntimeEndpoint at its socket",
            ),
            // Connecting only: a listening runtime accepts, a socket left by a stopped one
            // refuses. Nothing is sent.
            Ok(m) if m.file_type().is_socket() => match connect(&self.under_root(path)) {
                Ok(()) => return None,
                Err(e) => (
                    "NODE-RUNTIME-NOT-ANSWERING",
                    format!("nothing answers on the runtime endpoint {shown}: {e}"),
                    "start the container runtime (systemctl start containerd), or point \
                         the kubelet's containerRuntimeEndpoint at the socket it listens on",
                ),
            },
            Ok(_) => (
                "NODE-RUNTIME-ENDPOINT-NOT-SOCKET",
                format!("the runtime endpoint {shown} is not a socket"),
                "point the kubelet's containerRuntimeEndpoint at the container runtime's \
                 socket",
            ),
        };
        Some(self.finding(id, Severity::Error, message, PAGE_RUNTIME, fix.to_owned()))
    }

    /// The kubelet's version (`v1.20.2`, `1.19.0-rc.1`, `v1.21.3+k3s1`) against the API
    /// server's: `NODE-KUBELET-NEWER` (error) where the kubelet's minor version is newer,
    /// `NODE-KUBELET-TOO-OLD` (error) where it is older by more than two minors (API servers
    /// before v1.28) or three (from v1.28 on), `NODE-VERSION-UNKNOWN` (warning) where either
    /// version does not parse.
    pub fn skew(&self, kubelet: &str, apiserver: &str) -> Option<Finding> {
        let (Some(k), Some(a)) = (minor_version(kubelet), minor_version(apiserver)) else {
            return Some(self.finding(
                "NODE-VERSION-UNKNOWN",
                Severity::Warning,
                format!("cannot compare kubelet version {kubelet:?} with API server version {apiserver:?}"),
                PAGE_SKEW,
                "check the kubelet's and the API server's versions by hand".to_owned(),
            ));
        };
        let allowed = if a >= (1, 28) { 3 } else { 2 };
        let (id, fix) = if k > a {
            (
                "NODE-KUBELET-NEWER",
                format!(
                    "upgrade the API server to {kubelet} or later first, or downgrade the kubelet"
                ),
            )
        } else if k.0 < a.0 || a.1 - k.1 > allowed {
            (
                "NODE-KUBELET-TOO-OLD",
                format!(
                    "upgrade the kubelet to within {allowed} minor versions of the API server's \
                     {apiserver}"
                ),
            )
        } else {
            return None;
        };
        Some(self.finding(
            id,
            Severity::Error,
            format!("kubelet {kubelet} against API server {apiserver}"),
            PAGE_SKEW,
            fix,
        ))
    }

    fn finding(
        &self,
        id: &'static str,
        severity: Severity,
        message: String,
        page: &'static str,
        fix: String,
    ) -> Finding {
        Finding {
            id,
            severity,
            object: format!("node {}", self.name),
            message,
            page,
            fix,
        }
    }

    fn under_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A node path as the node sees it: `/proc/swaps`.
    fn show(&self, path: &str) -> String {
        format!("/{}", path.trim_start_matches('/'))
    }

    /// A file's text, `None` where it cannot be read (missing, unreadable, not UTF-8, not a
    /// regular file, over 1 MiB): a FIFO or device put in place of a /proc file cannot hang it.
    fn read(&self, path: &str) -> Option<String> {
        read_text(&self.under_root(path)).ok().flatten()
    }
}

/// The controllers `proc/cgroups` shows enabled: lines of `name hierarchy num_cgroups enabled`
/// whose fourth column is 1; the `#` header and lines of another shape are passed over.
fn enabled_v1(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols[..] {
                [name, _, _, "1"] => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// `(major, minor)` of a Kubernetes version with or without its `v`.
pub(crate) fn minor_version(version: &str) -> Option<(u32, u32)> {
    let v = version.trim();
    major_minor(v.strip_prefix('v').unwrap_or(v))
}

/// The `<digits>.<digits>` that `s` begins with, whatever follows.
fn major_minor(s: &str) -> Option<(u32, u32)> {
    fn number(s: &str) -> Option<(u32, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        Some((s[..end].parse().ok()?, &s[end..]))
    }
    let (major, rest) = number(s)?;
    let (minor, _) = number(rest.strip_prefix('.')?)?;
    Some((major, minor))
}

#[cfg(test)]
mod tests;
