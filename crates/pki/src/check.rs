//! Whether an existing certificate is fit for its slot in the inventory: the checks `init`
//! applies before reusing a file, and that `verify` reports.

use std::net::IpAddr;
use std::path::Path;

use time::OffsetDateTime;

use crate::cert::Certificate;
use crate::error::Error;
use crate::issue::CertTemplate;
use crate::key::PrivateKey;

/// Problems make a file unusable; warnings are worth a line but do not stop anything.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<Error>,
    pub warnings: Vec<String>,
}

impl Findings {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
    pub fn extend(&mut self, other: Findings) {
        self.problems.extend(other.problems);
        self.warnings.extend(other.warnings);
    }
}

/// A CA certificate (and its key when present).
pub fn check_ca(
    cert: &Certificate,
    cert_path: &Path,
    key: Option<(&PrivateKey, &Path)>,
    now: OffsetDateTime,
) -> Findings {
    let mut f = Findings::default();
    if !cert.is_ca {
        f.problems.push(Error::NotCa {
            path: cert_path.to_path_buf(),
        });
    }
    if let Some((key, key_path)) = key
        && !key.matches_public_key(cert.public_key_der())
    {
        f.problems.push(Error::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    check_time(cert, cert_path, now, &mut f);
    f
}

/// A leaf against the template it should satisfy and the CA that should have signed it.
/// `ca` is None when that CA does not exist yet (so the leaf cannot be trusted).
pub fn check_leaf(
    cert: &Certificate,
    cert_path: &Path,
    key: Option<(&PrivateKey, &Path)>,
    want: &CertTemplate,
    ca: Option<(&Certificate, &Path)>,
    now: OffsetDateTime,
) -> Findings {
    let mut f = Findings::default();
    if let Some((key, key_path)) = key
        && !key.matches_public_key(cert.public_key_der())
    {
        f.problems.push(Error::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    match ca {
        Some((ca_cert, ca_path)) => {
            if !cert.is_signed_by(ca_cert) {
                f.problems.push(Error::WrongIssuer {
                    path: cert_path.to_path_buf(),
                    ca: ca_path.to_path_buf(),
                });
            }
        }
        None => f.problems.push(Error::WrongForSlot {
            path: cert_path.to_path_buf(),
            reason: "exists, but the CA that should have signed it does not".into(),
        }),
    }
    check_time(cert, cert_path, now, &mut f);
    let mut lacks = Vec::new();
    if want.server_auth && !cert.server_auth {
        lacks.push("the serverAuth extended key usage");
    }
    if want.client_auth && !cert.client_auth {
        lacks.push("the clientAuth extended key usage");
    }
    if !lacks.is_empty() {
        f.problems.push(Error::WrongForSlot {
            path: cert_path.to_path_buf(),
            reason: format!("lacks {}", lacks.join(" and ")),
        });
    }
    let missing = missing_sans(cert, &want.dns_names, &want.ip_addresses);
    if !missing.is_empty() {
        f.problems.push(Error::WrongForSlot {
            path: cert_path.to_path_buf(),
            reason: format!("lacks SANs this node needs: {}", missing.join(", ")),
        });
    }
    if cert.common_name != want.common_name {
        f.warnings.push(format!(
            "{}: CN is {:?}, kubeadm would use {:?}",
            cert_path.display(),
            cert.common_name,
            want.common_name
        ));
    }
    let (mut have_o, mut want_o) = (cert.organizations.clone(), want.organizations.clone());
    have_o.sort();
    want_o.sort();
    if have_o != want_o {
        f.warnings.push(format!(
            "{}: O is {:?}, kubeadm would use {:?}",
            cert_path.display(),
            cert.organizations,
            want.organizations
        ));
    }
    f
}

fn check_time(cert: &Certificate, path: &Path, now: OffsetDateTime, f: &mut Findings) {
    if now > cert.not_after {
        f.problems.push(Error::Expired {
            path: path.to_path_buf(),
            not_after: cert.not_after,
        });
    } else if now < cert.not_before {
        f.warnings.push(
            Error::NotYetValid {
                path: path.to_path_buf(),
                not_before: cert.not_before,
            }
            .to_string()
                + " (clock skew?)",
        );
    }
}

/// SANs required but absent, as `DNS:x` / `IP:y`. DNS names compare case-insensitively.
pub fn missing_sans(cert: &Certificate, dns: &[String], ips: &[IpAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for d in dns {
        if !cert.dns_names.iter().any(|h| h.eq_ignore_ascii_case(d)) {
            out.push(format!("DNS:{d}"));
        }
    }
    for ip in ips {
        if !cert.ip_addresses.contains(ip) {
            out.push(format!("IP:{ip}"));
        }
    }
    out
}
