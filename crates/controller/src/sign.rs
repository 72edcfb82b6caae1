//! Optional signing (`--sign`): issues the serving certificate for an approved request, for
//! clusters whose kube-controller-manager does not sign kubelet-serving certificates.

use std::path::Path;
use std::time::Duration;

use kubepki_pki::cert::Certificate;
use kubepki_pki::csr::CsrInfo;
use kubepki_pki::issue::{self, CertTemplate, Signer};
use kubepki_pki::key::PrivateKey;
use time::OffsetDateTime;

/// The CA that signs, and for how long.
pub struct SigningCa {
    pub cert: Certificate,
    pub key: PrivateKey,
    pub duration: Duration,
}

impl SigningCa {
    /// Loads and checks a CA pair; errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path, duration: Duration) -> Result<Self, String> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
        let cert = Certificate::from_pem_chain(&read(cert_path)?)
            .map_err(|e| format!("{}: {e}", cert_path.display()))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no CERTIFICATE PEM block", cert_path.display()))?;
        if !cert.is_ca {
            return Err(format!(
                "{}: not a CA certificate (basicConstraints CA is not true)",
                cert_path.display()
            ));
        }
        let key = PrivateKey::from_pem(&read(key_path)?)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        if !key.matches_public_key(cert.public_key_der()) {
            return Err(format!(
                "{}: this key does not belong to {}",
                key_path.display(),
                cert_path.display()
            ));
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
        let mut lifetime = time::Duration::try_from(self.duration).map_err(|e| e.to_string())?;
        if let Some(s) = expiration_seconds {
            lifetime = lifetime.min(time::Duration::seconds(s));
        }
        let not_after = (now + lifetime).min(self.cert.not_after);
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
            now - time::Duration::minutes(5),
            not_after,
        )?;
        Ok(cert.to_pem())
    }
}
