//! Optional signing (`--sign`): issues the serving certificate for an approved request, for
//! clusters whose kube-controller-manager does not sign kubelet-serving certificates.
//!
//! An approval is not enough: whoever approved (this controller, or an admin with `kubectl
//! certificate approve`), a request is signed only if it passes the very rules the controller
//! approves by (`rules::check_bound`: the built-in signer's checks and the binding to a live
//! Node), and only while the CA can issue a certificate that is valid now.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use kubepki_pki::crypto::csr::CsrInfo;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::{Issuer, Window};
use kubepki_pki::error::IssueError;
use time::OffsetDateTime;

use crate::rules::{self, NodeInfo, Policy, Reason, Request};

/// The CA that signs, and for how long.
pub struct SigningCa {
    pub issuer: Issuer,
    pub duration: Duration,
}

/// Why an approved request is left unsigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request fails the rules. It never will pass: like the built-in signer, the controller
    /// marks it Failed.
    Rules(Reason),
    /// The CA's notAfter is not after now: anything it signed would be expired on arrival. Not
    /// the request's fault: it is signed once the controller runs with a valid CA.
    CaExpired { ca_not_after: OffsetDateTime },
    /// The request's own lifetime (`spec.expirationSeconds`) leaves no validity at all.
    NoValidity { expiration_seconds: i64 },
}

impl Refusal {
    /// Stable code: a metric label, also in Events and the Failed condition's message.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Rules(r) => r.code(),
            Refusal::CaExpired { .. } => "ca_expired",
            Refusal::NoValidity { .. } => "no_validity",
        }
    }

    /// True when the request itself is at fault, so retrying cannot help (a Failed condition).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Refusal::CaExpired { .. })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rules(r) => write!(f, "{r}"),
            Refusal::CaExpired { ca_not_after } => write!(
                f,
                "the signing CA expired at {ca_not_after}; a certificate it signs now would already be expired"
            ),
            Refusal::NoValidity { expiration_seconds } => write!(
                f,
                "spec.expirationSeconds {expiration_seconds} leaves the certificate no validity"
            ),
        }
    }
}

/// What to issue for an approved request.
#[derive(Clone, Debug)]
pub struct Plan {
    pub info: CsrInfo,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The signing decision, pure: the rules, then a validity window. notBefore is 5 minutes ago
/// (clock skew, as the controller-manager's signer backdates); notAfter is `duration` later, or
/// the requested lifetime if shorter, and never past the CA's own notAfter. Refused, as the
/// built-in signer refuses, when the CA's notAfter is not after now.
pub fn plan(
    req: &Request<'_>,
    node: Option<&NodeInfo>,
    policy: &Policy,
    ca_not_after: OffsetDateTime,
    duration: Duration,
    now: OffsetDateTime,
) -> Result<Plan, Refusal> {
    let info = rules::check_bound(req, node, policy).map_err(Refusal::Rules)?;
    if ca_not_after <= now {
        return Err(Refusal::CaExpired { ca_not_after });
    }
    let mut lifetime = duration;
    if let Some(s) = req.expiration_seconds {
        lifetime = lifetime.min(Duration::from_secs(s.max(0).unsigned_abs()));
    }
    let window = Window::new(now, lifetime, ca_not_after);
    if window.not_after <= now {
        return Err(Refusal::NoValidity {
            expiration_seconds: req.expiration_seconds.unwrap_or(0),
        });
    }
    Ok(Plan {
        info,
        not_before: window.not_before,
        not_after: window.not_after,
    })
}

impl SigningCa {
    /// Loads and checks a CA pair with the library's [`Issuer`] (the same reading and checks as
    /// `init` and `renew`); errors name the file.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        duration: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, kubepki_pki::Error> {
        let missing = |p: &Path| kubepki_pki::Error::not_found(p, "no such file");
        let issuer = Issuer::read(cert_path, key_path)?.ok_or_else(|| missing(cert_path))?;
        if !issuer.can_sign() {
            return Err(missing(key_path));
        }
        if let Some(p) = issuer.check(now).first_problem() {
            return Err(p);
        }
        Ok(SigningCa { issuer, duration })
    }

    /// `plan` with this CA's notAfter and lifetime.
    pub fn plan(
        &self,
        req: &Request<'_>,
        node: Option<&NodeInfo>,
        policy: &Policy,
        now: OffsetDateTime,
    ) -> Result<Plan, Refusal> {
        plan(
            req,
            node,
            policy,
            self.issuer.cert().not_after,
            self.duration,
            now,
        )
    }

    /// The serving certificate of a plan, as PEM.
    pub fn issue(&self, plan: &Plan) -> Result<String, IssueError> {
        let info = &plan.info;
        let template = CertTemplate {
            common_name: info.common_name.clone(),
            organizations: info.organizations.clone(),
            server_auth: true,
            dns_names: info.dns_names.clone(),
            ip_addresses: info.ip_addresses.clone(),
            ..Default::default()
        };
        let cert = self.issuer.sign_between(
            &template,
            &info.public_key,
            plan.not_before,
            plan.not_after,
        )?;
        Ok(cert.to_pem())
    }
}
