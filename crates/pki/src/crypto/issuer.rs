//! The one way kubepki signs: a CA read from its files and checked, that issues certificates
//! with kubeadm's validity window (backdated 5 minutes, never outliving the CA).
//!
//! A CA's certificate file may hold several certificates (a CA rotation puts the new CA
//! beside the old one): the first is the one that signs, and what every check and report says
//! about the CA is about it; all of them are trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use crate::crypto::cert::Certificate;
use crate::crypto::check::{Findings, check_time};
use crate::crypto::files;
use crate::crypto::issue::{self, CertTemplate, Signer};
use crate::crypto::key::PrivateKey;
use crate::error::{Error, IssueError, Result, SlotProblem};
use crate::format::duration;

/// kubeadm backdates notBefore to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// When a certificate issued at `now` is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The CA's notAfter, when it cut the asked-for validity short (worth a warning).
    pub cut_at: Option<OffsetDateTime>,
}

impl Window {
    /// From [`BACKDATE`] before `now` to `validity` after it, cut at `ca_not_after`: a
    /// certificate never outlives its CA, past that date it could not be verified anyway.
    pub fn new(now: OffsetDateTime, validity: Duration, ca_not_after: OffsetDateTime) -> Window {
        let wanted = duration::after(now, validity);
        Window {
            not_before: now - BACKDATE,
            not_after: wanted.min(ca_not_after),
            cut_at: (wanted > ca_not_after).then_some(ca_not_after),
        }
    }
}

/// A certificate just signed.
#[derive(Debug)]
pub struct Issued {
    pub cert: Certificate,
    /// As [`Window::cut_at`].
    pub cut_at: Option<OffsetDateTime>,
}

/// A certificate authority: the certificates of its `.crt` file (the first signs, all are
/// trusted) and its key, absent for an external CA (one that is trusted but cannot sign here).
#[derive(Debug)]
pub struct Issuer {
    certs: Vec<Certificate>,
    key: Option<PrivateKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Issuer {
    /// The CA whose files are `cert_path` and `key_path`; `None` when the certificate file is
    /// absent. Errors name the file, the certificate's first (the key is not read then).
    pub fn read(cert_path: &Path, key_path: &Path) -> Result<Option<Issuer>> {
        let Some(certs) = files::read_cert_chain(cert_path)? else {
            return Ok(None);
        };
        let key = files::read_key(key_path)?;
        Ok(Some(Issuer::new(certs, key, cert_path, key_path)))
    }

    /// A CA from what was read of its files (`certs` as [`files::read_cert_chain`] returns
    /// them: one at least).
    pub fn new(
        certs: Vec<Certificate>,
        key: Option<PrivateKey>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Issuer {
        assert!(!certs.is_empty(), "a CA file holds a certificate");
        Issuer {
            certs,
            key,
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }
    }

    /// A new self-signed CA for `key`, valid from [`BACKDATE`] before `now` for `validity`, to
    /// be written to `cert_path` and `key_path`.
    pub fn new_root(
        template: &CertTemplate,
        key: PrivateKey,
        now: OffsetDateTime,
        validity: Duration,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Issuer, IssueError> {
        let cert = issue::issue(
            template,
            key.public_key_der(),
            Signer::SelfSigned(&key),
            now - BACKDATE,
            duration::after(now, validity),
        )?;
        Ok(Issuer::new(vec![cert], Some(key), cert_path, key_path))
    }

    /// What makes the CA unusable, about its signing certificate: not a CA, not the key's,
    /// name-constrained, expired (not valid yet is a warning).
    pub fn check(&self, now: OffsetDateTime) -> Findings {
        let mut f = Findings::default();
        let cert = self.cert();
        if !cert.is_ca {
            f.problems.push(Error::NotCa {
                path: self.cert_path.clone(),
            });
        }
        if let Some(key) = &self.key
            && !key.matches_public_key(cert.public_key_der())
        {
            f.problems.push(Error::KeyMismatch {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
            });
        }
        if cert.name_constrained {
            f.problems
                .push(Error::slot(&self.cert_path, SlotProblem::NameConstrained));
        }
        check_time(cert, &self.cert_path, now, &mut f);
        f
    }

    /// The certificate that signs.
    pub fn cert(&self) -> &Certificate {
        &self.certs[0]
    }

    /// The CA's key, giving up the CA.
    pub fn into_key(self) -> Option<PrivateKey> {
        self.key
    }

    /// The CA's key; `None` for an external CA.
    pub fn key(&self) -> Option<&PrivateKey> {
        self.key.as_ref()
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// False for an external CA: its key is not here.
    pub fn can_sign(&self) -> bool {
        self.key.is_some()
    }

    /// Whether one of the CA's certificates signed `cert`.
    pub fn trusts(&self, cert: &Certificate) -> bool {
        self.certs.iter().any(|ca| cert.is_signed_by(ca))
    }

    /// Every certificate of the CA as kubeconfigs embed them (`certificate-authority-data`).
    pub fn bundle_pem(&self) -> String {
        files::bundle_pem(&self.certs)
    }

    /// The window of a certificate this CA signs at `now` for `validity`.
    pub fn window(&self, now: OffsetDateTime, validity: Duration) -> Window {
        Window::new(now, validity, self.cert().not_after)
    }

    /// Signs `template` for the public key `subject_spki` (DER SubjectPublicKeyInfo), valid
    /// as [`Issuer::window`] says; refused when that leaves no validity at all. Errors, like
    /// the x509 builder's, are texts for the caller to place.
    pub fn sign(
        &self,
        template: &CertTemplate,
        subject_spki: &[u8],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, IssueError> {
        let w = self.window(now, validity);
        Ok(Issued {
            cert: self.sign_between(template, subject_spki, w.not_before, w.not_after)?,
            cut_at: w.cut_at,
        })
    }

    /// Signs `template` for `subject_spki`, valid from `not_before` to `not_after` (cut at the
    /// CA's notAfter); refused when that is not after `not_before`.
    pub fn sign_between(
        &self,
        template: &CertTemplate,
        subject_spki: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Certificate, IssueError> {
        let not_after = not_after.min(self.cert().not_after);
        if not_after <= not_before {
            return Err(IssueError::NeverValid {
                ca: self.cert_path.clone(),
                not_before,
                not_after,
            });
        }
        let Some(key) = &self.key else {
            return Err(IssueError::External {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
            });
        };
        issue::issue(
            template,
            subject_spki,
            Signer::Ca {
                cert: self.cert(),
                key,
            },
            not_before,
            not_after,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::KeyAlgorithm;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn root(cn: &str, now: OffsetDateTime, validity: Duration) -> Issuer {
        let t = CertTemplate {
            common_name: cn.into(),
            is_ca: true,
            ..Default::default()
        };
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        Issuer::new_root(
            &t,
            key,
            now,
            validity,
            Path::new("ca.crt"),
            Path::new("ca.key"),
        )
        .unwrap()
    }

    fn leaf_template() -> CertTemplate {
        CertTemplate {
            common_name: "leaf".into(),
            client_auth: true,
            ..Default::default()
        }
    }

    fn leaf(by: &Issuer, now: OffsetDateTime, validity: Duration) -> Result<Issued, IssueError> {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        by.sign(&leaf_template(), key.public_key_der(), now, validity)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A CA file `<name>.crt` holding the certificates of `certs` in order, and `<name>.key`
    /// holding the key of `key`.
    fn ca_files(dir: &Path, name: &str, certs: &[&Issuer], key: &Issuer) -> (PathBuf, PathBuf) {
        let pem: String = certs.iter().map(|c| c.cert().to_pem()).collect();
        (
            write(dir, &format!("{name}.crt"), &pem),
            write(
                dir,
                &format!("{name}.key"),
                &key.key().unwrap().to_pem().unwrap(),
            ),
        )
    }

    /// A CA file with the new CA first and the old one after it: the new one signs and is
    /// what the checks judge; certificates of both are trusted; kubeconfigs get both.
    #[test]
    fn first_certificate_signs_all_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let old = root("old", NOW - 3650 * DAY, 3650 * DAY + DAY);
        let new = root("new", NOW, 3650 * DAY);
        let from_old = leaf(&old, NOW, 365 * DAY).unwrap().cert;
        let stranger = leaf(&root("other", NOW, 10 * DAY), NOW, DAY).unwrap().cert;

        let (crt, key) = ca_files(dir.path(), "ca", &[&new, &old], &new);
        let ca = Issuer::read(&crt, &key).unwrap().unwrap();
        assert_eq!(ca.cert().der(), new.cert().der());
        assert!(ca.can_sign());
        assert!(ca.check(NOW).is_ok());

        let issued = leaf(&ca, NOW, 365 * DAY).unwrap().cert;
        assert!(issued.is_signed_by(new.cert()));
        assert!(!issued.is_signed_by(old.cert()));
        assert_eq!(issued.issuer_der(), new.cert().subject_der());
        for c in [&issued, &from_old] {
            assert!(ca.trusts(c));
        }
        assert!(!ca.trusts(&stranger));
        assert_eq!(
            ca.bundle_pem(),
            new.cert().to_pem() + &old.cert().to_pem(),
            "certificate-authority-data holds both, in file order"
        );

        // The checks are about the signer: an expired CA after it changes nothing; an expired
        // signer is a problem even with a valid CA after it.
        let later = NOW + 2 * DAY;
        assert!(ca.check(later).is_ok());
        let (crt2, key2) = ca_files(dir.path(), "old-first", &[&old, &new], &old);
        let old_first = Issuer::read(&crt2, &key2).unwrap().unwrap();
        let found = old_first.check(later);
        assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
        assert!(
            found.problems[0]
                .to_string()
                .starts_with(&format!("{}: expired on", crt2.display()))
        );
        // The key must be the signer's.
        let found = Issuer::read(&crt, &key2).unwrap().unwrap().check(NOW);
        assert!(matches!(found.problems[..], [Error::KeyMismatch { .. }]));
    }

    #[test]
    fn absent_files_and_external_cas() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        assert!(Issuer::read(&crt, &key).unwrap().is_none());
        // A certificate without its key: an external CA, trusted, unable to sign.
        let ca = root("ext", NOW, 3650 * DAY);
        write(dir.path(), "ca.crt", &ca.cert().to_pem());
        let ext = Issuer::read(&crt, &key).unwrap().unwrap();
        assert!(!ext.can_sign() && ext.check(NOW).is_ok());
        let e = leaf(&ext, NOW, DAY).unwrap_err();
        assert!(matches!(&e, IssueError::External { key: k, .. } if *k == key));
        assert!(e.to_string().starts_with(&key.display().to_string()), "{e}");
        // Unreadable files are errors that name them.
        write(dir.path(), "ca.key", "not a key");
        let e = Issuer::read(&crt, &key).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: invalid private key", key.display())),
            "{e}"
        );
        write(dir.path(), "ca.crt", "not a certificate");
        let e = Issuer::read(&crt, &key).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: invalid certificate", crt.display())),
            "{e}"
        );
    }

    #[test]
    fn backdated_and_clamped_to_the_ca() {
        let ca = root("ca", NOW, 30 * DAY);
        let ca_end = NOW + 30 * DAY;
        // Inside the CA's life: backdated 5 minutes, the full validity, nothing cut.
        let w = ca.window(NOW, 10 * DAY);
        assert_eq!(w.not_before, NOW - time::Duration::minutes(5));
        assert_eq!(w.not_after, NOW + 10 * DAY);
        assert_eq!(w.cut_at, None);
        // Longer than the CA: cut at its end, and said so.
        let issued = leaf(&ca, NOW, 365 * DAY).unwrap();
        assert_eq!(issued.cut_at, Some(ca_end));
        assert_eq!(issued.cert.not_after, ca_end);
        assert_eq!(issued.cert.not_before, NOW - time::Duration::minutes(5));
        assert!(issued.cert.is_signed_by(ca.cert()));
        // Exactly to the CA's end is not a cut.
        assert_eq!(ca.window(NOW, 30 * DAY).cut_at, None);
        // An explicit window is cut at the CA's end too.
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let c = ca
            .sign_between(&leaf_template(), key.public_key_der(), NOW, NOW + 400 * DAY)
            .unwrap();
        assert_eq!(c.not_after, ca_end);
    }

    #[test]
    fn refuses_what_would_never_be_valid() {
        let ca = root("ca", NOW, 30 * DAY);
        let ca_end = NOW + 30 * DAY;
        // Signed when the CA has ended, or has less left than the backdate: notAfter (the
        // CA's end) would not be after notBefore.
        for now in [ca_end + DAY, ca_end + BACKDATE] {
            let e = leaf(&ca, now, 365 * DAY).unwrap_err();
            assert!(matches!(e, IssueError::NeverValid { .. }), "{e}");
            let e = e.to_string();
            assert!(e.starts_with("ca.crt: the CA ends"), "{e}");
            assert!(e.ends_with("would never be valid"), "{e}");
        }
        // A minute before the backdate runs out there is still a minute of validity.
        let last = leaf(&ca, ca_end + time::Duration::minutes(4), DAY).unwrap();
        assert_eq!(last.cert.not_after, ca_end);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let e = ca
            .sign_between(&leaf_template(), key.public_key_der(), NOW, NOW)
            .unwrap_err();
        assert!(matches!(e, IssueError::NeverValid { .. }), "{e}");
    }
}
