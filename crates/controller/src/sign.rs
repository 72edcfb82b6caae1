//! Optional signing (`--sign`): issues the serving certificate for an approved request, for
//! clusters whose kube-controller-manager does not sign kubelet-serving certificates.

use std::path::Path;
use std::time::Duration;

use kubepki_pki::cert::Certificate;
use kubepki_pki::csr::CsrInfo;
use kubepki_pki::issue::{self, CertTemplate, Signer};
use kubepki_pki::key::PrivateKey;
use kubepki_pki::params::BACKDATE;
use kubepki_pki::{check, duration, layout};
use time::OffsetDateTime;

/// The CA that signs, and for how long.
pub struct SigningCa {
    pub cert: Certificate,
    pub key: PrivateKey,
    pub duration: Duration,
}

impl SigningCa {
    /// Loads and checks a CA pair with the library's readers and CA checks (the same as
    /// `init` and `renew` apply); errors name the file.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        duration: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, String> {
        let missing = |p: &Path| format!("{}: no such file", p.display());
        let cert = layout::read_cert(cert_path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| missing(cert_path))?;
        let key = layout::read_key(key_path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| missing(key_path))?;
        let found = check::check_ca(&cert, cert_path, Some((&key, key_path)), now);
        if let Some(p) = found.problems.into_iter().next() {
            return Err(p.to_string());
        }
        Ok(SigningCa {
            cert,
            key,
            duration,
        })
    }

    /// A serving certificate for `info`, valid from 5 minutes ago (clock skew, as the
    /// controller-manager's signer backdates) for `duration` or the requested lifetime if
    /// shorter, and never past the CA's own expiry. Returns PEM.
    pub fn issue(
        &self,
        info: &CsrInfo,
        expiration_seconds: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<String, String> {
        let mut lifetime = self.duration;
        if let Some(s) = expiration_seconds {
            lifetime = lifetime.min(Duration::from_secs(s.max(0).unsigned_abs()));
        }
        let not_after = duration::after(now, lifetime).min(self.cert.not_after);
        let template = CertTemplate {
            common_name: info.common_name.clone(),
            organizations: info.organizations.clone(),
            server_auth: true,
            dns_names: info.dns_names.clone(),
            ip_addresses: info.ip_addresses.clone(),
            ..Default::default()
        };
        let cert = issue::issue(
            &template,
            &info.public_key,
            Signer::Ca {
                cert: &self.cert,
                key: &self.key,
            },
            now - BACKDATE,
            not_after,
        )?;
        Ok(cert.to_pem())
    }
}
