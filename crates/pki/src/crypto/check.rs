//! Whether a certificate is fit for its slot: a leaf against the template it should satisfy
//! and the CA that should have signed it (what `init` applies before reusing a file), a chain
//! as Go verifies it (what `import` applies before installing one). The CA checks are the
//! [`crate::crypto::issuer::Issuer`]'s.

use std::net::IpAddr;
use std::path::Path;

use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::issue::CertTemplate;
use crate::crypto::key::PrivateKey;
use crate::error::{ChainCa, Error, SlotProblem};
pub use crate::error::{ChainProblem, NAME_CONSTRAINED};

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
    /// The first problem, for a command that stops at one (warnings are dropped).
    pub fn first_problem(self) -> Option<Error> {
        self.problems.into_iter().next()
    }
}

/// The chain a CA returned for a slot, as Go's `Certificate.Verify` judges it with `ca` as the
/// root and the slot's usages: the leaf (first) reaches `ca` through the intermediates that
/// follow it, each signed by the next; every CA on the way is valid now, allows that many
/// intermediates below it (pathLenConstraint), carries no name constraints, and, like every
/// certificate of the chain, allows the slot's extended key usages. Err says why not.
pub fn check_chain(
    chain: &[Certificate],
    ca: &Certificate,
    server_auth: bool,
    client_auth: bool,
    now: OffsetDateTime,
) -> Result<(), ChainProblem> {
    let mut path: Vec<&Certificate> = Vec::new();
    for (i, c) in chain.iter().enumerate() {
        path.push(c);
        if c.is_signed_by(ca) {
            break;
        }
        match chain.get(i + 1) {
            Some(next) if next.is_ca && c.is_signed_by(next) => continue,
            _ => return Err(ChainProblem::NotSignedByCa),
        }
    }
    if path.is_empty() {
        return Err(ChainProblem::NotSignedByCa);
    }
    path.push(ca);
    let ca_at = |k: usize, c: &Certificate| ChainCa {
        common_name: c.common_name.clone(),
        index: k + 1,
    };
    for (k, c) in path.iter().enumerate().skip(1) {
        if let Some(max) = c.max_path_len
            && (k as u64 - 1) > max
        {
            return Err(ChainProblem::PathLen {
                ca: ca_at(k, c),
                max,
                has: k - 1,
            });
        }
        if c.name_constrained {
            return Err(ChainProblem::NameConstrained { ca: ca_at(k, c) });
        }
        if now > c.not_after || now < c.not_before {
            return Err(ChainProblem::NotValidNow {
                ca: ca_at(k, c),
                not_before: c.not_before,
                not_after: c.not_after,
            });
        }
    }
    for (k, c) in path.iter().enumerate() {
        if !c.ext_key_usage_present || c.any_ext_key_usage {
            continue;
        }
        let mut lacks = Vec::new();
        if server_auth && !c.server_auth {
            lacks.push("serverAuth");
        }
        if client_auth && !c.client_auth {
            lacks.push("clientAuth");
        }
        if !lacks.is_empty() && k > 0 {
            return Err(ChainProblem::UsageLimited {
                ca: ca_at(k, c),
                lacks,
            });
        }
    }
    Ok(())
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
        None => f
            .problems
            .push(Error::slot(cert_path, SlotProblem::SignerAbsent)),
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
        f.problems
            .push(Error::slot(cert_path, SlotProblem::LacksUsage(lacks)));
    }
    let missing = missing_sans(cert, &want.dns_names, &want.ip_addresses);
    if !missing.is_empty() {
        f.problems
            .push(Error::slot(cert_path, SlotProblem::MissingSans(missing)));
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

/// Expired is a problem; not valid yet a warning (clock skew between nodes).
pub(crate) fn check_time(cert: &Certificate, path: &Path, now: OffsetDateTime, f: &mut Findings) {
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
