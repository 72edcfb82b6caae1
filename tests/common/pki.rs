//! kubeadm's PKI as the renew tests see it: which certificates and kubeconfigs `certs renew all`
//! replaces, where their files are below a node's kubeconfig dir (with the cert dir in `pki/`,
//! as `init_node` lays it out), and what a test needs to compare such a directory over time.
//! One table, so that the tests cannot disagree about kubeadm's layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{fresh_pki, kubepki};

/// The node the renew tests make their PKI for.
pub const NODE: &str = "n1";
pub const IP: &str = "10.0.0.1";
/// When they make it (leaves then expire Jan 01, 2027, CAs Dec 30, 2035) and when they renew.
pub const INIT_NOW: &str = "2026-01-01T00:00:00Z";
pub const RENEW_NOW: &str = "2026-06-01T00:00:00Z";
/// Where a renewal puts the old files by default, below the kubeconfig dir.
pub const BACKUPS: &str = "kubepki-backups";

/// One of kubeadm's renewable leaf certificates.
pub struct Leaf {
    /// kubeadm's name for it: `certs renew NAME`, its check-expiration row.
    pub name: &'static str,
    /// Its certificate and key without `.crt`/`.key`, relative to the kubeconfig dir.
    pub base: &'static str,
    /// The certificate of the CA that signs it, relative to the kubeconfig dir.
    pub issuer: &'static str,
}

impl Leaf {
    pub fn crt(&self) -> String {
        format!("{}.crt", self.base)
    }

    pub fn key(&self) -> String {
        format!("{}.key", self.base)
    }
}

/// The leaves `certs renew all` replaces, in kubeadm's order.
pub const LEAVES: &[Leaf] = &[
    Leaf {
        name: "apiserver",
        base: "pki/apiserver",
        issuer: "pki/ca.crt",
    },
    Leaf {
        name: "apiserver-kubelet-client",
        base: "pki/apiserver-kubelet-client",
        issuer: "pki/ca.crt",
    },
    Leaf {
        name: "apiserver-etcd-client",
        base: "pki/apiserver-etcd-client",
        issuer: "pki/etcd/ca.crt",
    },
    Leaf {
        name: "front-proxy-client",
        base: "pki/front-proxy-client",
        issuer: "pki/front-proxy-ca.crt",
    },
    Leaf {
        name: "etcd-server",
        base: "pki/etcd/server",
        issuer: "pki/etcd/ca.crt",
    },
    Leaf {
        name: "etcd-peer",
        base: "pki/etcd/peer",
        issuer: "pki/etcd/ca.crt",
    },
    Leaf {
        name: "etcd-healthcheck-client",
        base: "pki/etcd/healthcheck-client",
        issuer: "pki/etcd/ca.crt",
    },
];

/// The kubeconfigs `certs renew all` replaces (kubelet.conf is renewed only by name), each
/// with a client certificate the cluster CA signs.
pub const KUBECONFIGS: &[&str] = &[
    "admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "super-admin.conf",
];

pub fn leaf(name: &str) -> Option<&'static Leaf> {
    LEAVES.iter().find(|l| l.name == name)
}

/// Every name `certs renew all` covers, in kubeadm's check-expiration order (by name).
pub fn cert_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = LEAVES
        .iter()
        .map(|l| l.name)
        .chain(KUBECONFIGS.iter().copied())
        .collect();
    names.sort_unstable();
    names
}

/// The issuing CA's certificate of `name`, relative to the kubeconfig dir.
pub fn issuer_of(name: &str) -> &'static str {
    leaf(name).map_or("pki/ca.crt", |l| l.issuer)
}

/// The names among `cert_names()` that the CA whose certificate is `issuer` signs.
pub fn signed_by(issuer: &str) -> Vec<&'static str> {
    cert_names()
        .into_iter()
        .filter(|n| issuer_of(n) == issuer)
        .collect()
}

/// The files a renewal of `name` replaces, relative to the kubeconfig dir.
pub fn files_of(name: &str) -> Vec<String> {
    match leaf(name) {
        Some(l) => vec![l.crt(), l.key()],
        None => vec![name.to_string()],
    }
}

pub fn files_of_all(names: &[&str]) -> BTreeSet<String> {
    names.iter().flat_map(|n| files_of(n)).collect()
}

/// A PKI made by `kubepki init` at INIT_NOW for NODE at IP.
pub fn fresh() -> tempfile::TempDir {
    fresh_pki(NODE, IP, &["--now", INIT_NOW])
}

/// kubepki with `args`, then the cert and kubeconfig dirs of the node whose kubeconfig dir is `d`.
pub fn kubepki_in(d: &Path, args: &[&str]) -> Command {
    let mut c = kubepki();
    c.args(args)
        .arg("--cert-dir")
        .arg(d.join("pki"))
        .arg("--kubeconfig-dir")
        .arg(d);
    c
}

/// `certs restore BACKUP EXTRA --now NOW` into the node in `d`.
pub fn restore(d: &Path, backup: &Path, now: &str, extra: &[&str]) -> Command {
    let mut c = kubepki_in(d, &["certs", "restore"]);
    c.arg(backup).args(extra).args(["--now", now]);
    c
}

/// Relative path -> (bytes, mode), for comparing a directory before and after a run.
pub type Tree = BTreeMap<PathBuf, (Vec<u8>, u32)>;

/// The entries of `snapshot(root)` that `keep` accepts (given their full path), keyed by their
/// path relative to `root`.
pub fn tree_of(
    root: &Path,
    snapshot: Vec<(PathBuf, Vec<u8>, u32)>,
    keep: impl Fn(&Path) -> bool,
) -> Tree {
    snapshot
        .into_iter()
        .filter(|(p, _, _)| keep(p))
        .map(|(p, b, m)| (p.strip_prefix(root).unwrap().to_path_buf(), (b, m)))
        .collect()
}

/// The backup directories below the kubeconfig dir `d`, sorted.
pub fn backups(d: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(d.join(BACKUPS)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// `init` of an ECDSA-P256 PKI for NODE at IP into the node in `d`, with `extra` flags.
pub fn init_cmd(d: &Path, extra: &[&str]) -> Command {
    let mut c = kubepki_in(
        d,
        &[
            "init",
            "--node-name",
            NODE,
            "--apiserver-advertise-address",
            IP,
            "--encryption-algorithm",
            "ECDSA-P256",
        ],
    );
    c.args(extra);
    c
}

/// Runs `case(n)` for n = 1, 2, ... (`batch` at a time, side by side) until a run completes
/// (`case` returns None), at most `max` ops. Returns the outcome of every killed run by kill
/// point, and how many file operations a complete run counted.
pub fn kill_at_every_op<C: Send>(
    max: u64,
    batch: u64,
    case: impl Fn(u64) -> Option<C> + Sync,
) -> (BTreeMap<u64, C>, u64) {
    let mut cases = BTreeMap::new();
    let mut completed_at = None;
    let mut n = 1;
    while completed_at.is_none() && n <= max {
        let ks: Vec<u64> = (n..(n + batch).min(max + 1)).collect();
        n += batch;
        let results: Vec<(u64, Option<C>)> = std::thread::scope(|s| {
            let hs: Vec<_> = ks
                .iter()
                .map(|&k| {
                    let case = &case;
                    s.spawn(move || (k, case(k)))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for (k, r) in results {
            match r {
                Some(c) => {
                    assert!(
                        completed_at.is_none(),
                        "killed after op {k}, but a run with a lower limit completed"
                    );
                    cases.insert(k, c);
                }
                None => {
                    completed_at.get_or_insert(k);
                }
            }
        }
    }
    let completed_at = completed_at.unwrap_or_else(|| panic!("never completed within {max} ops"));
    (cases, completed_at - 1)
}

/// Every path below `root` whose name starts with `.kubepki` (temp files and the journal).
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    super::snapshot(root)
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".kubepki"))
        })
        .collect()
}

/// The state ("prepared" or "committed") of the journal a killed run left in `cert_dir`.
pub fn journal_state(cert_dir: &Path) -> Option<String> {
    let bytes = fs::read(cert_dir.join(".kubepki-journal")).ok()?;
    let j: serde_json::Value = serde_json::from_slice(&bytes).expect("the journal is JSON");
    Some(j["state"].as_str().unwrap_or("committed").to_string())
}
