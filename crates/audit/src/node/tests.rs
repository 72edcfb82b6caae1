//! Each check's table over temporary roots laid out like `/`: compliant nodes, failing ones,
//! and missing, empty and garbage files, which must give the documented finding or none.

use std::os::unix::net::UnixListener;

use tempfile::TempDir;

use super::*;
use crate::testing::{Want, assert_found};
use Severity::{Error, Info, Warning};

const NODE: &str = "node n1";
const SETUP: &str = "Validating node setup";

/// A root holding these files (path below the root, contents).
fn root(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

fn local(dir: &TempDir) -> LocalNode {
    LocalNode::new("n1", dir.path())
}

/// A table's row: the case, the root's files (path, contents), the findings wanted.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Want);

/// Runs a table through `check`.
fn run(cases: Vec<Case>, page: &str, check: impl Fn(&LocalNode) -> Vec<Finding>) {
    assert!(
        cases.iter().any(|(.., w)| w.is_empty()),
        "no compliant case"
    );
    assert!(cases.iter().any(|(.., w)| !w.is_empty()), "no finding case");
    for (case, files, want) in cases {
        let dir = root(&files);
        assert_found(case, &check(&local(&dir)), want, page);
    }
}

#[test]
fn kernel_versions_parse() {
    let cases = [
        ("5.15.0-91-generic", Some((5, 15))),
        ("3.10.0-1160.el7.x86_64\n", Some((3, 10))),
        ("4.15", Some((4, 15))),
        ("  6.1.0\n", Some((6, 1))),
        ("", None),
        ("garbage", None),
        ("5", None),
        ("5.", None),
        ("5.x", None),
        ("99999999999.1", None),
    ];
    for (text, want) in cases {
        let got = KernelVersion::parse(text).map(|v| (v.major, v.minor));
        assert_eq!(got, want, "{text:?}");
    }
    assert_eq!(MIN_KERNEL_CGROUP_V2.to_string(), "4.15");
}

#[test]
fn kernel() {
    const TOO_OLD: Want = &[("NODE-KERNEL-TOO-OLD", Error, NODE)];
    const UNKNOWN: Want = &[("NODE-KERNEL-UNKNOWN", Warning, NODE)];
    let cases: Vec<Case> = vec![
        ("recent", vec![(OSRELEASE, "5.15.0-91-generic\n")], &[]),
        (
            "exactly the minimum",
            vec![(OSRELEASE, "4.15.0-20-generic\n")],
            &[],
        ),
        ("one minor below", vec![(OSRELEASE, "4.14.300\n")], TOO_OLD),
        (
            "v1.20-era minimum",
            vec![(OSRELEASE, "3.10.0-1160.el7\n")],
            TOO_OLD,
        ),
        ("missing", vec![], UNKNOWN),
        ("empty", vec![(OSRELEASE, "")], UNKNOWN),
        ("garbage", vec![(OSRELEASE, "not a kernel\n")], UNKNOWN),
    ];
    run(cases, SETUP, |n| {
        n.kernel(MIN_KERNEL_CGROUP_V2).into_iter().collect()
    });

    // The minimum is the caller's: 3.10 lets the CentOS 7 kernel through.
    let dir = root(&[(OSRELEASE, "3.10.0-1160.el7\n")]);
    assert_eq!(local(&dir).kernel(MIN_KERNEL_V1_20), None);
    let dir = root(&[(OSRELEASE, "3.9.0\n")]);
    assert!(local(&dir).kernel(MIN_KERNEL_V1_20).is_some());
}

const V2_ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";
const V1_HEADER: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n";
const V1_ALL: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                      cpuset\t2\t1\t1\ncpu\t3\t60\t1\ncpuacct\t3\t60\t1\nblkio\t4\t60\t1\n\
                      memory\t5\t90\t1\ndevices\t6\t60\t1\nfreezer\t7\t1\t1\npids\t8\t65\t1\n";

#[test]
fn cgroups() {
    const MISSING: Want = &[("NODE-CGROUP-CONTROLLERS-MISSING", Error, NODE)];
    const OPTIONAL: Want = &[("NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING", Warning, NODE)];
    const BOTH: Want = &[
        ("NODE-CGROUP-CONTROLLERS-MISSING", Error, NODE),
        ("NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING", Warning, NODE),
    ];
    const UNKNOWN: Want = &[("NODE-CGROUP-UNKNOWN", Warning, NODE)];
    let memory_off = V1_ALL.replace("memory\t5\t90\t1", "memory\t0\t1\t0");
    let no_pids = V1_ALL.replace("pids\t8\t65\t1\n", "");
    let cases: Vec<Case> = vec![
        (
            "v2, every controller",
            vec![(CGROUP_V2_CONTROLLERS, V2_ALL)],
            &[],
        ),
        // A v2 node has proc/cgroups too; cgroup.controllers decides.
        (
            "v2 with proc/cgroups",
            vec![
                (CGROUP_V2_CONTROLLERS, V2_ALL),
                (CGROUP_V1_TABLE, V1_HEADER),
            ],
            &[],
        ),
        (
            "v2 without io",
            vec![(CGROUP_V2_CONTROLLERS, "cpuset cpu memory pids\n")],
            OPTIONAL,
        ),
        (
            "v2 without pids",
            vec![(CGROUP_V2_CONTROLLERS, "cpuset cpu io memory\n")],
            MISSING,
        ),
        ("v2, empty", vec![(CGROUP_V2_CONTROLLERS, "")], BOTH),
        (
            "v2, garbage",
            vec![(CGROUP_V2_CONTROLLERS, "\u{0}%%\n")],
            BOTH,
        ),
        ("v1, every controller", vec![(CGROUP_V1_TABLE, V1_ALL)], &[]),
        (
            "v1, memory disabled",
            vec![(CGROUP_V1_TABLE, &memory_off)],
            MISSING,
        ),
        ("v1, no pids", vec![(CGROUP_V1_TABLE, &no_pids)], MISSING),
        (
            "v1, header only",
            vec![(CGROUP_V1_TABLE, V1_HEADER)],
            MISSING,
        ),
        ("v1, empty", vec![(CGROUP_V1_TABLE, "")], MISSING),
        (
            "v1, garbage",
            vec![(CGROUP_V1_TABLE, "cpu yes\nmemory 1 2 3 4 5\n")],
            MISSING,
        ),
        ("neither", vec![], UNKNOWN),
    ];
    run(cases, SETUP, LocalNode::cgroups);
}

#[test]
fn cgroup_findings_name_what_is_missing() {
    let dir = root(&[(CGROUP_V2_CONTROLLERS, "cpu io memory\n")]);
    let node = local(&dir);
    assert_eq!(node.cgroup_version(), Some(CgroupVersion::V2));
    let findings = node.cgroups();
    assert_eq!(
        findings[0].message,
        "/sys/fs/cgroup/cgroup.controllers does not enable: cpuset, pids"
    );
    assert_eq!(
        default_min_kernel(node.cgroup_version()),
        MIN_KERNEL_CGROUP_V2
    );
    assert_eq!(
        default_min_kernel(Some(CgroupVersion::V1)),
        MIN_KERNEL_V1_20
    );
    assert_eq!(default_min_kernel(None), MIN_KERNEL_V1_20);
}

const SWAP_HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

#[test]
fn swap() {
    const ON: Want = &[("NODE-SWAP-ON", Error, NODE)];
    let on = format!("{SWAP_HEADER}/swap.img\tfile\t2097148\t0\t-2\n");
    let cases: Vec<Case> = vec![
        ("header only", vec![(SWAPS, SWAP_HEADER)], &[]),
        ("no file (kernel without swap)", vec![], &[]),
        ("empty", vec![(SWAPS, "")], &[]),
        ("blank lines", vec![(SWAPS, "\n\n")], &[]),
        ("a swap file", vec![(SWAPS, &on)], ON),
        ("garbage line", vec![(SWAPS, "garbage\n")], ON),
    ];
    run(cases, SETUP, |n| n.swap(true).into_iter().collect());

    let dir = root(&[(SWAPS, &on)]);
    let node = local(&dir);
    assert_eq!(node.swap(true).unwrap().message, "swap is on: /swap.img");
    assert_eq!(node.swap(false), None, "failSwapOn false allows swap");
}

#[test]
fn runtime_endpoint() {
    let dir = root(&[("run/not-a-socket", "")]);
    let node = local(&dir);
    fs::create_dir_all(dir.path().join("run/containerd")).unwrap();
    let _listener = UnixListener::bind(dir.path().join("run/containerd/containerd.sock")).unwrap();
    // A socket whose listener is gone, as a stopped runtime leaves it.
    drop(UnixListener::bind(dir.path().join("run/stale.sock")).unwrap());
    const STALE: Want = &[("NODE-RUNTIME-NOT-ANSWERING", Error, NODE)];
    const MISSING: Want = &[("NODE-RUNTIME-ENDPOINT-MISSING", Error, NODE)];
    const NOT_SOCKET: Want = &[("NODE-RUNTIME-ENDPOINT-NOT-SOCKET", Error, NODE)];
    const UNCHECKED: Want = &[("NODE-RUNTIME-ENDPOINT-UNCHECKED", Info, NODE)];
    let cases: [(&str, Want); 12] = [
        ("unix:///run/containerd/containerd.sock", &[]),
        // As Go's url.Parse reads them: no authority, a scheme in capitals, a host `run`.
        ("unix:/run/containerd/containerd.sock", &[]),
        ("UNIX:///run/containerd/containerd.sock", &[]),
        ("unix://run/containerd/containerd.sock", MISSING),
        ("unix:///run/stale.sock", STALE),
        ("/run/containerd/containerd.sock", &[]),
        ("unix:///run/crio/crio.sock", MISSING),
        ("", MISSING),
        ("unix:///run/not-a-socket", NOT_SOCKET),
        ("unix:///run/containerd", NOT_SOCKET),
        ("tcp://127.0.0.1:2375", UNCHECKED),
        ("npipe:////./pipe/containerd", UNCHECKED),
    ];
    for (endpoint, want) in cases {
        let found: Vec<_> = node.runtime_endpoint(endpoint).into_iter().collect();
        assert_found(endpoint, &found, want, SETUP);
    }
}

#[test]
fn skew() {
    const NEWER: Want = &[("NODE-KUBELET-NEWER", Error, NODE)];
    const OLD: Want = &[("NODE-KUBELET-TOO-OLD", Error, NODE)];
    const UNKNOWN: Want = &[("NODE-VERSION-UNKNOWN", Warning, NODE)];
    let cases: [(&str, &str, Want); 16] = [
        ("v1.20.2", "v1.20.2", &[]),
        ("v1.20.0", "v1.20.2", &[]),
        ("v1.20.9", "v1.20.2", &[]),
        ("v1.18.20", "v1.20.2", &[]),
        ("v1.17.0", "v1.20.2", OLD),
        ("v1.21.0", "v1.20.2", NEWER),
        ("v2.0.0", "v1.20.2", NEWER),
        ("v0.20.0", "v1.20.2", OLD),
        ("v1.25.0", "v1.27.3", &[]),
        ("v1.24.0", "v1.27.3", OLD),
        ("v1.25.0", "v1.28.0", &[]),
        ("v1.24.0", "v1.28.0", OLD),
        ("1.19.0-rc.1", "v1.21.3+k3s1", &[]),
        ("", "v1.20.2", UNKNOWN),
        ("v1.20.2", "garbage", UNKNOWN),
        ("v1", "v1.20.2", UNKNOWN),
    ];
    let dir = root(&[]);
    let node = local(&dir);
    for (kubelet, apiserver, want) in cases {
        let case = format!("{kubelet} against {apiserver}");
        let found: Vec<_> = node.skew(kubelet, apiserver).into_iter().collect();
        assert_found(&case, &found, want, "Version skew policy");
    }
}

#[test]
fn check_runs_every_file_check() {
    let broken = root(&[
        (OSRELEASE, "4.4.0\n"),
        (CGROUP_V2_CONTROLLERS, "cpu memory\n"),
        (
            SWAPS,
            &format!("{SWAP_HEADER}/dev/sda2\tpartition\t1\t0\t-2\n"),
        ),
    ]);
    let options = NodeOptions {
        runtime_endpoint: Some("unix:///run/containerd/containerd.sock".into()),
        ..NodeOptions::default()
    };
    let want: Want = &[
        ("NODE-KERNEL-TOO-OLD", Error, NODE),
        ("NODE-CGROUP-CONTROLLERS-MISSING", Error, NODE),
        ("NODE-CGROUP-OPTIONAL-CONTROLLERS-MISSING", Warning, NODE),
        ("NODE-SWAP-ON", Error, NODE),
        ("NODE-RUNTIME-ENDPOINT-MISSING", Error, NODE),
    ];
    assert_found("broken", &local(&broken).check(&options), want, SETUP);

    // The same kernel passes on cgroup v1 (minimum 3.10) unless the caller raises it.
    let v1 = root(&[(OSRELEASE, "4.4.0\n"), (CGROUP_V1_TABLE, V1_ALL)]);
    assert_found("v1", &local(&v1).check(&NodeOptions::default()), &[], SETUP);
    let raised = NodeOptions {
        min_kernel: Some(MIN_KERNEL_CGROUP_V2),
        ..NodeOptions::default()
    };
    let want: Want = &[("NODE-KERNEL-TOO-OLD", Error, NODE)];
    assert_found("v1, raised", &local(&v1).check(&raised), want, SETUP);

    // Swap allowed, and an empty root: what cannot be read is said, nothing panics.
    let empty = root(&[]);
    let lenient = NodeOptions {
        fail_swap_on: false,
        ..NodeOptions::default()
    };
    let want: Want = &[
        ("NODE-KERNEL-UNKNOWN", Warning, NODE),
        ("NODE-CGROUP-UNKNOWN", Warning, NODE),
    ];
    assert_found("empty root", &local(&empty).check(&lenient), want, SETUP);
}

#[test]
fn kubelet_settings_from_config_and_flags() {
    use super::{KubeletSettings, kubelet_settings};
    let dir = tempfile::tempdir().unwrap();
    let read = || kubelet_settings(dir.path());
    assert_eq!(
        read(),
        (KubeletSettings::default(), vec![]),
        "no files, no settings"
    );

    fs::write(
        dir.path().join("config.yaml"),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailSwapOn: false\ncontainerRuntimeEndpoint: unix:///run/crio/crio.sock\n",
    )
    .unwrap();
    let (s, f) = read();
    assert!(f.is_empty());
    assert_eq!(s.fail_swap_on, Some(false));
    assert_eq!(
        s.runtime_endpoint.as_deref(),
        Some("unix:///run/crio/crio.sock")
    );

    // kubeadm v1.20's flags file, whose flags win over the file.
    fs::write(
        dir.path().join("kubeadm-flags.env"),
        "KUBELET_KUBEADM_ARGS=\"--container-runtime=remote --container-runtime-endpoint=/run/containerd/containerd.sock --fail-swap-on=true --pod-infra-container-image=k8s.gcr.io/pause:3.2\"\n",
    )
    .unwrap();
    let (s, _) = read();
    assert_eq!(s.fail_swap_on, Some(true));
    assert_eq!(
        s.runtime_endpoint.as_deref(),
        Some("/run/containerd/containerd.sock")
    );
    fs::write(
        dir.path().join("kubeadm-flags.env"),
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint unix:///x.sock --fail-swap-on=F\"\n",
    )
    .unwrap();
    let (s, _) = read();
    assert_eq!(s.fail_swap_on, Some(false));
    assert_eq!(s.runtime_endpoint.as_deref(), Some("unix:///x.sock"));

    // The last assignment wins, as systemd's EnvironmentFile reads it.
    fs::write(
        dir.path().join("kubeadm-flags.env"),
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///gone.sock\"\nKUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.5\"\n",
    )
    .unwrap();
    let (s, _) = read();
    assert_eq!(
        s.runtime_endpoint.as_deref(),
        Some("unix:///run/crio/crio.sock")
    );

    // A broken file is a finding naming it, without its contents.
    fs::write(
        dir.path().join("config.yaml"),
        "failSwapOn: [secret-token\n",
    )
    .unwrap();
    let (_, f) = read();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].id, "NODE-KUBELET-CONFIG");
    assert!(f[0].object.ends_with("config.yaml"));
    assert!(!f[0].message.contains("secret"), "{}", f[0].message);
    fs::remove_file(dir.path().join("config.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("config.yaml")).unwrap();
    let (_, f) = read();
    assert_eq!(f[0].message, "not a regular file");
}
