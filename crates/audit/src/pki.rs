//! The PKI against the certificates page and kubeadm's inventory: every required certificate
//! present, with the usages kubeadm gives it and the SANs it would give it for the node, no
//! leaf outliving its CA, validity, key size and expiry against policy, private key files
//! private to root, and kubeconfigs trusting the cluster CA; and ([`kubelet_serving`]) the
//! kubelet's serving certificate, self-signed or issued by the cluster CA.
//!
//! Unlike the other checks this one reads files (the cert and kubeconfig dirs, through
//! kubepki-pki's inventory), since the PKI is files; it only reads them. A file that cannot be
//! read is itself a finding (PKI-UNREADABLE), and the rest is still checked.
//!
//! Key size: an RSA key by its modulus' size against `--min-rsa-bits`; ECDSA P-256/P-384 pass;
//! any other key is one kubeadm does not issue.
//!
//! SANs: with the node's parameters ([`Policy::node`]) a serving certificate must carry every
//! SAN `kubepki init` (and kubeadm) would give it, computed by kubepki-pki's own rules; without
//! them, only the SANs that are the same on every node (the API server's `kubernetes…` service
//! names, etcd's `localhost`, `127.0.0.1` and `::1`). Extra SANs are never a finding.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::check::missing_sans;
use kubepki_pki::crypto::files;
use kubepki_pki::fsio;
use kubepki_pki::model::inventory::{self, CaId, SanRule, Usage};
use kubepki_pki::model::kubeconfig::{EmbeddedKind, embedded_pems};
use kubepki_pki::model::layout::{FileKind, Layout};
use kubepki_pki::model::params::{ClusterParams, DEFAULT_DNS_DOMAIN, node_independent_sans};
use kubepki_pki::model::slot::{self, Item};
use time::OffsetDateTime;

use crate::{Finding, Severity};

/// What the PKI is held to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Longest validity of a leaf (`--max-leaf-validity`), from notBefore to notAfter, not
    /// counting kubeadm's backdating of notBefore ([`BACKDATE`]).
    pub max_leaf_validity: Duration,
    /// Smallest RSA key (`--min-rsa-bits`).
    pub min_rsa_bits: u32,
    /// Certificates expiring within this long are reported.
    pub expiry_horizon: Duration,
    /// Who must own private key files: root (0), or the test's own uid.
    pub key_owner_uid: u32,
    /// Whether etcd runs on this node, so that its CA and certificates are required.
    pub local_etcd: bool,
    /// The node's parameters as `kubepki init` resolves them (flags or kubeadm config): with
    /// them, serving certificates must carry every SAN kubeadm would give them on this node.
    /// Only the node name, advertise address, service subnet, DNS domain, control-plane
    /// endpoint and the extra SANs (`apiserver_cert_sans`, `etcd_*_cert_sans`) are read.
    /// `None`: only the SANs every node shares are checked.
    pub node: Option<ClusterParams>,
}

impl Default for Policy {
    /// kubeadm's own choices: leaves for a year, RSA-2048, 30 days' notice, keys owned by root.
    fn default() -> Policy {
        Policy {
            max_leaf_validity: Duration::from_secs(365 * 86400),
            min_rsa_bits: 2048,
            expiry_horizon: Duration::from_secs(30 * 86400),
            key_owner_uid: 0,
            local_etcd: true,
            node: None,
        }
    }
}

/// kubeadm (and kubepki) start a certificate's validity five minutes early, for clock skew;
/// a one-year certificate is a year and five minutes long, and within a one-year policy.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

const PAGE_MISSING: &str = "PKI certificates and requirements: a kubeadm control plane needs every certificate of its inventory (CAs, API server, kubelet client, front proxy, etcd, kubeconfigs).";
const PAGE_UNREADABLE: &str = "PKI certificates and requirements: every certificate and key of the inventory must be a readable PEM file.";
const PAGE_OUTLIVES: &str = "PKI certificates and requirements: a certificate is valid only while its CA is, so a leaf must not outlive the CA that signed it.";
const PAGE_VALIDITY: &str = "PKI certificates and requirements: leaf certificates are short-lived (kubeadm issues them for one year) and renewed before they expire.";
const PAGE_KEY_SIZE: &str = "PKI certificates and requirements: keys are RSA of at least the policy's size or ECDSA (kubeadm supports RSA-2048/3072/4096 and ECDSA P-256/P-384).";
const PAGE_EXPIRING: &str = "Certificate management with kubeadm: certificates must be renewed before they expire, or the control plane stops working.";
const PAGE_KEY_MODE: &str =
    "PKI certificates and requirements: private keys are readable by their owner only (mode 0600).";
const PAGE_KEY_OWNER: &str = "PKI certificates and requirements: private keys are owned by root, who runs the control plane.";
const PAGE_USAGE: &str = "PKI certificates and requirements: each certificate has the usages kubeadm gives it (server auth, client auth or both, digital signature; CAs CA:TRUE and certificate signing).";
const PAGE_SANS: &str = "PKI certificates and requirements: a serving certificate names every name and address its clients reach it by (the API server: node, kubernetes Service names and IP, endpoint; etcd: node, localhost, loopback).";
const PAGE_KUBELET_SERVING: &str = "Certificate management with kubeadm: the kubelet's serving certificate is self-signed unless serverTLSBootstrap is on, and then issued by the cluster CA through an approved CSR.";
const PAGE_KUBECONFIG_CA: &str = "PKI certificates and requirements: kubeconfigs of the cluster trust the cluster CA (ca.crt) and nothing else.";

/// The PKI's findings at `now`, in inventory order: CAs, then kubeadm's certificates, then
/// key files, then kubeconfigs.
pub fn check(layout: &Layout, now: OffsetDateTime, policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut cas: BTreeMap<CaId, Certificate> = BTreeMap::new();
    for ca in inventory::kubeadm_cas(policy.local_etcd) {
        let path = layout.ca_cert(ca);
        match files::read_cert(&path) {
            Ok(Some(cert)) => {
                ca_usage(&mut out, &path, &cert, ca.name);
                key_size(&mut out, &path, &cert, policy);
                expiry(&mut out, &path, &cert, now, policy);
                cas.insert(ca.id, cert);
            }
            Ok(None) => out.push(missing(&path, ca.name)),
            Err(e) => out.push(unreadable(&path, &e)),
        }
    }
    for item in slot::kubeadm_items(policy.local_etcd) {
        let files = item.files(layout);
        let Some(path) = files.first() else { continue };
        let cert = match item.read_cert(layout) {
            Ok(Some(cert)) => cert,
            // super-admin.conf exists from Kubernetes 1.29 only, and which version the cluster
            // runs is not known here: its absence is no finding.
            Ok(None) if item.since_1_29() => continue,
            Ok(None) => {
                out.push(missing(path, item.name()));
                continue;
            }
            Err(e) => {
                out.push(unreadable(path, &e));
                continue;
            }
        };
        let ca = inventory::ca(item.issuer());
        if let Some(ca_cert) = cas.get(&ca.id)
            && cert.not_after > ca_cert.not_after
        {
            out.push(Finding {
                id: "PKI-LEAF-OUTLIVES-CA",
                severity: Severity::Warning,
                object: path.display().to_string(),
                message: format!(
                    "{} expires {}, after its CA {} ({})",
                    item.name(),
                    cert.not_after.date(),
                    ca.name,
                    ca_cert.not_after.date()
                ),
                page: PAGE_OUTLIVES,
                fix: format!(
                    "renew the {} CA before it expires, or renew {} (a renewed certificate ends with its CA)",
                    ca.name,
                    item.name()
                ),
            });
        }
        let validity = cert.not_after - cert.not_before;
        if validity > policy.max_leaf_validity + BACKDATE {
            out.push(Finding {
                id: "PKI-LEAF-VALIDITY",
                severity: Severity::Warning,
                object: path.display().to_string(),
                message: format!(
                    "{} is valid for {} days, more than the policy's {}",
                    item.name(),
                    validity.whole_days(),
                    hours(policy.max_leaf_validity)
                ),
                page: PAGE_VALIDITY,
                fix: format!(
                    "renew {} with a validity of at most {}",
                    item.name(),
                    hours(policy.max_leaf_validity)
                ),
            });
        }
        leaf_usage(&mut out, path, &cert, item.name(), item.usage());
        sans(&mut out, path, &cert, item, policy.node.as_ref());
        key_size(&mut out, path, &cert, policy);
        expiry(&mut out, path, &cert, now, policy);
    }
    for (path, kind) in layout.managed_files() {
        if kind == FileKind::PrivateKey {
            key_file(&mut out, &path, policy);
        }
    }
    let cluster_ca = cas.get(&CaId::Ca);
    for kc in inventory::KUBECONFIGS {
        kubeconfig_ca(&mut out, &layout.kubeconfig(kc), cluster_ca);
    }
    out
}

fn missing(path: &Path, name: &str) -> Finding {
    Finding {
        id: "PKI-MISSING",
        severity: Severity::Error,
        object: path.display().to_string(),
        message: format!("{name} is missing"),
        page: PAGE_MISSING,
        fix: format!(
            "create it with `kubeadm init phase certs` (or `kubeadm init phase kubeconfig` for a kubeconfig), or `kubepki init`, which creates only what is missing ({name})"
        ),
    }
}

fn unreadable(path: &Path, e: &dyn std::fmt::Display) -> Finding {
    Finding {
        id: "PKI-UNREADABLE",
        severity: Severity::Error,
        object: path.display().to_string(),
        message: e.to_string(),
        page: PAGE_UNREADABLE,
        fix: "restore the file from a backup, or remove it and create it anew".to_owned(),
    }
}

/// RSA's size for the algorithms kubeadm supports; `None` for ECDSA.
fn key_size(out: &mut Vec<Finding>, path: &Path, cert: &Certificate, policy: &Policy) {
    let fix = format!(
        "renew it with an RSA key of at least {} bits or an ECDSA key (kubeadm's encryptionAlgorithm)",
        policy.min_rsa_bits
    );
    let (severity, message) = match (cert.rsa_bits(), cert.key_algorithm) {
        (Some(bits), _) if bits < policy.min_rsa_bits => (
            Severity::Error,
            format!(
                "an RSA key of {bits} bits, fewer than the policy's {}",
                policy.min_rsa_bits
            ),
        ),
        // Within policy: kubeadm's sizes, or a larger RSA key it would not issue but Go reads.
        (Some(_), _) | (None, Some(_)) => return,
        (None, None) => (
            Severity::Warning,
            "a key that is neither RSA nor ECDSA P-256/P-384, which kubeadm does not issue"
                .to_owned(),
        ),
    };
    out.push(Finding {
        id: "PKI-KEY-SIZE",
        severity,
        object: path.display().to_string(),
        message,
        page: PAGE_KEY_SIZE,
        fix,
    });
}

fn expiry(
    out: &mut Vec<Finding>,
    path: &Path,
    cert: &Certificate,
    now: OffsetDateTime,
    policy: &Policy,
) {
    expiry_fixed_by(
        out,
        path,
        cert,
        now,
        policy,
        "renew it: `kubepki certs renew` (or `kubeadm certs renew`), a CA with `kubepki ca rotate`",
    );
}

/// [`expiry`], with `fix` as the way to renew.
fn expiry_fixed_by(
    out: &mut Vec<Finding>,
    path: &Path,
    cert: &Certificate,
    now: OffsetDateTime,
    policy: &Policy,
    fix: &str,
) {
    let left = cert.not_after - now;
    let (severity, message) = if left <= time::Duration::ZERO {
        (
            Severity::Critical,
            format!("expired on {}", cert.not_after.date()),
        )
    } else if left < policy.expiry_horizon {
        (
            Severity::Warning,
            format!(
                "expires on {}, in {} days (horizon {})",
                cert.not_after.date(),
                left.whole_days(),
                hours(policy.expiry_horizon)
            ),
        )
    } else {
        return;
    };
    out.push(Finding {
        id: "PKI-EXPIRING",
        severity,
        object: path.display().to_string(),
        message,
        page: PAGE_EXPIRING,
        fix: fix.to_owned(),
    });
}

/// A CA certificate must be one (basicConstraints CA:TRUE) and allowed to sign certificates
/// (keyCertSign): Go refuses a chain through a CA whose key usage lacks it. No key usage
/// extension at all is a warning only (Go then allows every usage; kubeadm always sets one).
fn ca_usage(out: &mut Vec<Finding>, path: &Path, cert: &Certificate, name: &str) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if !cert.is_ca {
        errors.push("is not a CA (no basicConstraints CA:TRUE)".to_owned());
    }
    match cert.key_usage {
        Some(ku) if !ku.key_cert_sign => {
            errors.push("its key usage lacks certificate signing (keyCertSign)".to_owned())
        }
        Some(_) => {}
        None => warnings.push(
            "has no key usage extension (kubeadm gives CAs keyCertSign, critical)".to_owned(),
        ),
    }
    usage_finding(
        out,
        path,
        name,
        errors,
        warnings,
        format!(
            "re-create the {name} CA with basicConstraints CA:TRUE and keyCertSign, and re-issue what it signed: `kubepki ca rotate`"
        ),
    );
}

/// A leaf's usages against the inventory's: the extended key usages `want` (serverAuth,
/// clientAuth) and digitalSignature, as kubeadm issues them, and no CA flag. One lacking is an
/// error; usages kubeadm would not give (an extra serverAuth or clientAuth, others, keyCertSign,
/// no extended key usage extension, which allows any) are a warning.
fn leaf_usage(out: &mut Vec<Finding>, path: &Path, cert: &Certificate, name: &str, want: Usage) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if cert.is_ca {
        errors.push("is a CA certificate (basicConstraints CA:TRUE), not a leaf".to_owned());
    }
    if !cert.ext_key_usage_present {
        warnings.push(format!(
            "has no extended key usage extension, so any usage (kubeadm gives {want})"
        ));
    } else {
        let any = cert.any_ext_key_usage;
        for (wanted, has, eku) in [
            (want.server_auth(), cert.server_auth, "serverAuth"),
            (want.client_auth(), cert.client_auth, "clientAuth"),
        ] {
            if wanted && !has && !any {
                errors.push(format!("lacks the {eku} extended key usage"));
            } else if !wanted && has {
                warnings.push(format!("also has {eku}, which kubeadm does not give it"));
            }
        }
        if any || cert.other_ext_key_usage {
            warnings.push(format!(
                "has extended key usages other than kubeadm's ({want})"
            ));
        }
    }
    match cert.key_usage {
        Some(ku) if !ku.digital_signature => {
            errors.push("its key usage lacks digitalSignature".to_owned())
        }
        Some(ku) if ku.key_cert_sign => {
            warnings.push("its key usage allows certificate signing (keyCertSign)".to_owned())
        }
        Some(_) => {}
        None => warnings.push(
            "has no key usage extension (kubeadm gives digitalSignature and keyEncipherment)"
                .to_owned(),
        ),
    }
    usage_finding(
        out,
        path,
        name,
        errors,
        warnings,
        format!(
            "issue it anew with kubeadm's usages ({want}, digitalSignature): move it away and run `kubepki init` (or `kubeadm init phase certs`/`kubeconfig`), which creates what is missing; a renewal copies the usages it has"
        ),
    );
}

/// One PKI-USAGE finding for a certificate: an error when anything lacks, else a warning.
fn usage_finding(
    out: &mut Vec<Finding>,
    path: &Path,
    name: &str,
    errors: Vec<String>,
    warnings: Vec<String>,
    fix: String,
) {
    let severity = if errors.is_empty() {
        Severity::Warning
    } else {
        Severity::Error
    };
    let all: Vec<String> = errors.into_iter().chain(warnings).collect();
    if all.is_empty() {
        return;
    }
    out.push(Finding {
        id: "PKI-USAGE",
        severity,
        object: path.display().to_string(),
        message: format!("{name} {}", all.join("; ")),
        page: PAGE_USAGE,
        fix,
    });
}

/// The SANs kubeadm would give `item`: for the node when its parameters are known (through
/// kubepki-pki's templates, as `init` issues them), else those every node shares, the DNS
/// domain being the one the certificate names (`kubernetes.default.svc.<domain>`) or
/// cluster.local. Node parameters whose template fails (an invalid service subnet, say, which
/// `ClusterParams::validate` refuses) fall back to the shared ones.
fn expected_sans(
    item: Item,
    cert: &Certificate,
    node: Option<&ClusterParams>,
) -> (Vec<String>, Vec<std::net::IpAddr>) {
    if let Some(t) = node.and_then(|p| item.template(p).ok()) {
        return (t.dns_names, t.ip_addresses);
    }
    let rule = item.san_rule();
    let domain = cert
        .dns_names
        .iter()
        .filter_map(|d| d.strip_prefix("kubernetes.default.svc."))
        .find(|d| !d.is_empty())
        .filter(|_| rule == SanRule::ApiServer)
        .unwrap_or(DEFAULT_DNS_DOMAIN);
    node_independent_sans(rule, domain)
}

/// A serving certificate lacking SANs kubeadm would give it (PKI-SANS).
fn sans(
    out: &mut Vec<Finding>,
    path: &Path,
    cert: &Certificate,
    item: Item,
    node: Option<&ClusterParams>,
) {
    if item.san_rule() == SanRule::None {
        return;
    }
    let (dns, ips) = expected_sans(item, cert, node);
    let missing = missing_sans(cert, &dns, &ips);
    if missing.is_empty() {
        return;
    }
    let bare: Vec<&str> = missing
        .iter()
        .map(|m| m.split_once(':').map_or(m.as_str(), |(_, v)| v))
        .collect();
    let whose = match node {
        Some(p) => format!("kubeadm gives it on node {}", p.node_name),
        None => "kubeadm gives it on every node".to_owned(),
    };
    out.push(Finding {
        id: "PKI-SANS",
        severity: Severity::Error,
        object: path.display().to_string(),
        message: format!("{} lacks {} ({whose})", item.name(), missing.join(", ")),
        page: PAGE_SANS,
        fix: format!(
            "renew it with them: `kubepki certs renew {} --add-sans {}`",
            item.name(),
            bare.join(",")
        ),
    });
}

/// The kubelet's rotated serving certificate and key (serverTLSBootstrap: true), in its PKI dir.
pub const KUBELET_SERVING_CURRENT: &str = "kubelet-server-current.pem";
/// The kubelet's self-signed serving certificate (serverTLSBootstrap off) and its key.
pub const KUBELET_SELF_SIGNED_CERT: &str = "kubelet.crt";
pub const KUBELET_SELF_SIGNED_KEY: &str = "kubelet.key";
/// Where the kubelet keeps its certificates (`--cert-dir`).
pub const DEFAULT_KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";

/// The kubelet's serving certificate in `kubelet_pki_dir` (`/var/lib/kubelet/pki`) at `now`:
/// with serverTLSBootstrap, `kubelet-server-current.pem` (what the kubelet serves then), which
/// must be issued by `cluster_ca` (when given) and allow serverAuth; else `kubelet.crt`, which
/// the kubelet signed itself (a warning: clients cannot verify the kubelet). Expiry, key size
/// and the key file's mode and owner too. No such file (or no such dir): not a node, nothing
/// to report. Files are read bounded, symlinks followed (the kubelet's current file is one);
/// one that cannot be read (dangling link, FIFO, too large, not PEM) is PKI-UNREADABLE.
pub fn kubelet_serving(
    kubelet_pki_dir: &Path,
    cluster_ca: Option<&Certificate>,
    now: OffsetDateTime,
    policy: &Policy,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let current = kubelet_pki_dir.join(KUBELET_SERVING_CURRENT);
    match files::read_cert_with_key(&current) {
        Ok(Some(cert)) => {
            kubelet_rotated(&mut out, &current, &cert, cluster_ca);
            key_size(&mut out, &current, &cert, policy);
            expiry_fixed_by(
                &mut out,
                &current,
                &cert,
                now,
                policy,
                "the kubelet renews it itself once its CSR is approved: check that its CSRs (signer kubernetes.io/kubelet-serving) are approved, e.g. by `kubepki controller`",
            );
            key_file(&mut out, &current, policy);
            return out;
        }
        Ok(None) => {}
        Err(e) => {
            out.push(unreadable(&current, &e));
            return out;
        }
    }
    let crt = kubelet_pki_dir.join(KUBELET_SELF_SIGNED_CERT);
    let chain = match files::read_cert_chain(&crt) {
        Ok(Some(chain)) => chain,
        Ok(None) => return out,
        Err(e) => {
            out.push(unreadable(&crt, &e));
            return out;
        }
    };
    let cert = &chain[0];
    let by_cluster_ca = cluster_ca.is_some_and(|ca| cert.is_signed_by(ca));
    if by_cluster_ca {
        leaf_usage(
            &mut out,
            &crt,
            cert,
            "the kubelet's serving certificate",
            Usage::Server,
        );
    } else if kubelets_own(&chain) {
        out.push(Finding {
            id: "PKI-KUBELET-SERVING-SELF-SIGNED",
            severity: Severity::Warning,
            object: crt.display().to_string(),
            message: format!(
                "the kubelet serves a certificate it signed itself ({:?}): clients (the API server's logs, exec and metrics) cannot verify the kubelet",
                cert.common_name
            ),
            page: PAGE_KUBELET_SERVING,
            fix: "set serverTLSBootstrap: true in the kubelet's configuration and run an approver that checks the node, such as `kubepki controller`".to_owned(),
        });
    } else {
        out.push(Finding {
            id: "PKI-KUBELET-SERVING-ISSUER",
            severity: Severity::Warning,
            object: crt.display().to_string(),
            message: format!(
                "the kubelet's serving certificate is issued by {:?}, which is not the cluster CA",
                cert.issuer.common_name.as_deref().unwrap_or("")
            ),
            page: PAGE_KUBELET_SERVING,
            fix: "set serverTLSBootstrap: true in the kubelet's configuration so that the cluster CA issues it, with an approver such as `kubepki controller`".to_owned(),
        });
    }
    key_size(&mut out, &crt, cert, policy);
    expiry_fixed_by(
        &mut out,
        &crt,
        cert,
        now,
        policy,
        "turn on serverTLSBootstrap so that the kubelet renews it through CSRs; until then, remove kubelet.crt and kubelet.key and restart the kubelet, which signs a new pair",
    );
    key_file(
        &mut out,
        &kubelet_pki_dir.join(KUBELET_SELF_SIGNED_KEY),
        policy,
    );
    out
}

/// Whether a chain is rooted in itself, as the kubelet writes kubelet.crt: one self-signed
/// certificate, or a leaf followed by the throwaway CA that signed it.
fn kubelets_own(chain: &[Certificate]) -> bool {
    let self_signed = |c: &Certificate| c.is_self_issued() && c.is_signed_by(c);
    match chain {
        [leaf] => self_signed(leaf),
        [leaf, ca, ..] => leaf.is_signed_by(ca) && self_signed(ca),
        [] => false,
    }
}

/// A serving certificate the kubelet obtained through a CSR: the cluster CA's, serverAuth.
fn kubelet_rotated(
    out: &mut Vec<Finding>,
    path: &Path,
    cert: &Certificate,
    cluster_ca: Option<&Certificate>,
) {
    if let Some(ca) = cluster_ca
        && !cert.is_signed_by(ca)
    {
        let message = if cert.issuer_der() == ca.subject_der() {
            "the kubelet's serving certificate names the cluster CA as its issuer, but its signature does not verify with ca.crt (signed by another CA of the same name)".to_owned()
        } else {
            format!(
                "the kubelet's serving certificate is issued by {:?}, not by the cluster CA",
                cert.issuer.common_name.as_deref().unwrap_or("")
            )
        };
        out.push(Finding {
            id: "PKI-KUBELET-SERVING-ISSUER",
            severity: Severity::Error,
            object: path.display().to_string(),
            message,
            page: PAGE_KUBELET_SERVING,
            fix: "make the controller-manager sign kubelet-serving CSRs with the cluster CA (--cluster-signing-cert-file=ca.crt), then remove the file, restart the kubelet and approve its new CSR (`kubepki controller`)".to_owned(),
        });
    }
    leaf_usage(
        out,
        path,
        cert,
        "the kubelet's serving certificate",
        Usage::Server,
    );
}

/// What `read` reads of `path`; `None` when the file is absent, or unreadable (a finding).
fn if_present<T>(
    out: &mut Vec<Finding>,
    path: &Path,
    read: impl FnOnce(&Path) -> std::io::Result<T>,
) -> Option<T> {
    match read(path) {
        Ok(v) => Some(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.push(unreadable(path, &e));
            None
        }
    }
}

/// A private key file's mode and owner; an absent one (an external CA's key, a rotation
/// that is not under way) is none of this check's business.
fn key_file(out: &mut Vec<Finding>, path: &Path, policy: &Policy) {
    let Some(meta) = if_present(out, path, |p| std::fs::metadata(p)) else {
        return;
    };
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 {
        out.push(Finding {
            id: "PKI-KEY-MODE",
            severity: Severity::Error,
            object: path.display().to_string(),
            message: format!("mode {mode:04o}, not 0600"),
            page: PAGE_KEY_MODE,
            fix: format!("chmod 0600 {}", shell_word(path)),
        });
    }
    if meta.uid() != policy.key_owner_uid {
        out.push(Finding {
            id: "PKI-KEY-OWNER",
            severity: Severity::Error,
            object: path.display().to_string(),
            message: format!("owned by uid {}, not {}", meta.uid(), policy.key_owner_uid),
            page: PAGE_KEY_OWNER,
            fix: format!("chown {} {}", policy.key_owner_uid, shell_word(path)),
        });
    }
}

/// The CAs a kubeconfig's clusters embed, against the cluster CA: none but it.
fn kubeconfig_ca(out: &mut Vec<Finding>, path: &Path, cluster_ca: Option<&Certificate>) {
    // Read bounded, as the inventory reads it (a FIFO must not hang the audit); a file the
    // inventory already found unreadable is not reported twice.
    let read = fsio::exists(path).and_then(|e| e.then(|| fsio::read_to_string(path)).transpose());
    let text = match read {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => {
            let object = path.display().to_string();
            if !out
                .iter()
                .any(|f| f.id == "PKI-UNREADABLE" && f.object == object)
            {
                out.push(unreadable(path, &e));
            }
            return;
        }
    };
    let Some(cluster_ca) = cluster_ca else {
        return;
    };
    let embedded = match embedded_pems(&text, path) {
        Ok(e) => e,
        Err(e) => {
            out.push(unreadable(path, &e));
            return;
        }
    };
    for (kind, cluster, pem) in embedded {
        if kind != EmbeddedKind::Cluster {
            continue;
        }
        let certs = match Certificate::from_pem_chain(&pem) {
            Ok(c) => c,
            Err(e) => {
                out.push(unreadable(path, &e));
                continue;
            }
        };
        let trusted = certs.iter().any(|c| c.der() == cluster_ca.der());
        let others: Vec<String> = certs
            .iter()
            .filter(|c| c.der() != cluster_ca.der())
            .map(|c| format!("{:?}", c.common_name))
            .collect();
        if others.is_empty() {
            continue;
        }
        let (severity, message) = if trusted {
            (
                Severity::Warning,
                format!(
                    "cluster {cluster} trusts ca.crt and also {}",
                    others.join(", ")
                ),
            )
        } else {
            (
                Severity::Error,
                format!(
                    "cluster {cluster} trusts {} instead of ca.crt",
                    others.join(", ")
                ),
            )
        };
        out.push(Finding {
            id: "PKI-KUBECONFIG-CA",
            severity,
            object: path.display().to_string(),
            message,
            page: PAGE_KUBECONFIG_CA,
            fix: "set the cluster's certificate-authority-data to ca.crt (base64), or regenerate the kubeconfig".to_owned(),
        });
    }
}

#[cfg(test)]
mod tests;

/// A path as one shell word, so that an advised command can be pasted.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text).map_or_else(|_| format!("{text:?}"), |q| q.into_owned())
}

/// A policy's duration as its flag is written (`8760h`), or in seconds below an hour.
fn hours(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{s}s"),
    }
}
