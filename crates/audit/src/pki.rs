//! The PKI against the certificates page and kubeadm's inventory: every required certificate
//! present, no leaf outliving its CA, validity, key size and expiry against policy, private
//! key files private to root, and kubeconfigs trusting the cluster CA.
//!
//! Unlike the other checks this one reads files (the cert and kubeconfig dirs, through
//! kubepki-pki's inventory), since the PKI is files; it only reads them. A file that cannot be
//! read is itself a finding (PKI-UNREADABLE), and the rest is still checked.
//!
//! Key size: kubepki-pki exposes a certificate's key as [`KeyAlgorithm`] (RSA-2048/3072/4096,
//! ECDSA P-256/P-384), not the RSA modulus size, so an RSA key of any other size (1024 bits,
//! say) is reported as a key kubeadm does not support rather than by its size.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::files;
use kubepki_pki::crypto::key::KeyAlgorithm;
use kubepki_pki::model::inventory::{self, CaId};
use kubepki_pki::model::kubeconfig::{EmbeddedKind, embedded_pems};
use kubepki_pki::model::layout::{FileKind, Layout};
use kubepki_pki::model::slot;
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
                    humantime::format_duration(policy.max_leaf_validity)
                ),
                page: PAGE_VALIDITY,
                fix: format!(
                    "renew {} with a validity of at most {}",
                    item.name(),
                    humantime::format_duration(policy.max_leaf_validity)
                ),
            });
        }
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
fn rsa_bits(alg: KeyAlgorithm) -> Option<u32> {
    match alg {
        KeyAlgorithm::Rsa2048 => Some(2048),
        KeyAlgorithm::Rsa3072 => Some(3072),
        KeyAlgorithm::Rsa4096 => Some(4096),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => None,
    }
}

fn key_size(out: &mut Vec<Finding>, path: &Path, cert: &Certificate, policy: &Policy) {
    let fix = format!(
        "renew it with an RSA key of at least {} bits or an ECDSA key (kubeadm's encryptionAlgorithm)",
        policy.min_rsa_bits
    );
    let (severity, message) = match cert.key_algorithm {
        Some(alg) => match rsa_bits(alg) {
            Some(bits) if bits < policy.min_rsa_bits => (
                Severity::Error,
                format!(
                    "an RSA key of {bits} bits, fewer than the policy's {}",
                    policy.min_rsa_bits
                ),
            ),
            _ => return,
        },
        None => (
            Severity::Warning,
            "a key that is neither RSA-2048/3072/4096 nor ECDSA P-256/P-384 (its size is not read)"
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
                humantime::format_duration(policy.expiry_horizon)
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
        fix: "renew it: `kubepki certs renew` (or `kubeadm certs renew`), a CA with `kubepki ca rotate`"
            .to_owned(),
    });
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
            fix: format!("chmod 0600 {}", path.display()),
        });
    }
    if meta.uid() != policy.key_owner_uid {
        out.push(Finding {
            id: "PKI-KEY-OWNER",
            severity: Severity::Error,
            object: path.display().to_string(),
            message: format!("owned by uid {}, not {}", meta.uid(), policy.key_owner_uid),
            page: PAGE_KEY_OWNER,
            fix: format!("chown {} {}", policy.key_owner_uid, path.display()),
        });
    }
}

/// The CAs a kubeconfig's clusters embed, against the cluster CA: none but it.
fn kubeconfig_ca(out: &mut Vec<Finding>, path: &Path, cluster_ca: Option<&Certificate>) {
    let Some(text) = if_present(out, path, |p| std::fs::read_to_string(p)) else {
        return;
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
