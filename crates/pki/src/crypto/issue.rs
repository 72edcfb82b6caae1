//! Building certificates the way kubeadm (Go's crypto/x509) lays them out. Signing goes
//! through [`crate::crypto::issuer::Issuer`], which decides the validity window.
//!
//! Built with x509-cert rather than rcgen because a kubeadm PKI needs two things rcgen's
//! DistinguishedName cannot express: several `O` values in one subject (user groups), and an
//! issuer name copied byte for byte from an existing CA (Go matches parents by raw bytes).

use std::net::IpAddr;
use std::str::FromStr;
use std::time::SystemTime;

use const_oid::db::rfc4519::{COMMON_NAME, ORGANIZATION_NAME};
use const_oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
use der::asn1::{BitString, Ia5String, OctetString, PrintableStringRef};
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey};
use time::OffsetDateTime;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::crypto::cert::Certificate;
use crate::crypto::key::PrivateKey;
use crate::error::{CryptoError, IssueError};

/// What goes into a certificate besides key and validity.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CertTemplate {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl CertTemplate {
    /// The attributes an existing certificate carries (what kubeadm's renewal copies).
    pub fn from_certificate(c: &Certificate) -> Self {
        CertTemplate {
            common_name: c.common_name.clone(),
            organizations: c.organizations.clone(),
            is_ca: c.is_ca,
            server_auth: c.server_auth,
            client_auth: c.client_auth,
            dns_names: c.dns_names.clone(),
            ip_addresses: c.ip_addresses.clone(),
        }
    }
}

/// Who signs: the subject's own key (a root CA) or a CA certificate with its key.
#[derive(Clone, Copy)]
pub(crate) enum Signer<'a> {
    SelfSigned(&'a PrivateKey),
    Ca {
        cert: &'a Certificate,
        key: &'a PrivateKey,
    },
}

/// Issues a certificate for the public key `subject_spki` (DER SubjectPublicKeyInfo).
pub(crate) fn issue(
    template: &CertTemplate,
    subject_spki: &[u8],
    signer: Signer<'_>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Certificate, IssueError> {
    let subject = subject_name(&template.common_name, &template.organizations)?;
    let (issuer, signing_key, issuer_ski) = match signer {
        Signer::SelfSigned(key) => (subject.clone(), key, None),
        Signer::Ca { cert, key } => {
            let issuer = Name::from_der(cert.subject_der()).map_err(IssueError::CaSubject)?;
            (issuer, key, cert.subject_key_id.clone())
        }
    };
    let spki =
        spki::SubjectPublicKeyInfoOwned::from_der(subject_spki).map_err(IssueError::PublicKey)?;

    let extensions = extensions(template, &subject, &spki, issuer_ski)?;
    let profile = Profile {
        subject,
        issuer: issuer.clone(),
        extensions,
    };
    let validity = Validity::new(to_time(not_before)?, to_time(not_after)?);
    let mut builder = CertificateBuilder::new(profile, random_serial()?, validity, spki)
        .map_err(CryptoError::from)?;
    let adapter = SignerAdapter(signing_key);
    let tbs = builder.finalize(&adapter).map_err(CryptoError::from)?;
    let sig = signing_key.sign(&tbs)?;
    let cert = builder
        .assemble(BitString::from_bytes(&sig)?, &adapter)
        .map_err(CryptoError::from)?;
    let der = cert.to_der()?;
    let parsed = Certificate::from_der(&der).map_err(IssueError::Reread)?;
    // Go finds parents by raw issuer bytes; a re-encoded name that differs would orphan the cert.
    if let Signer::Ca { cert, .. } = signer
        && parsed.issuer_der() != cert.subject_der()
    {
        return Err(IssueError::SubjectNotReencodable);
    }
    Ok(parsed)
}

/// Go's pkix.Name order: all O values in one RDN, then CN. Strings are PrintableString when
/// they fit, UTF8String otherwise, as Go's encoding/asn1 chooses.
pub fn subject_name(cn: &str, orgs: &[String]) -> Result<Name, IssueError> {
    fn named(field: &'static str, value: &str) -> impl FnOnce(der::Error) -> IssueError {
        let value = value.to_string();
        move |source| IssueError::Name {
            field,
            value,
            source,
        }
    }
    let mut seq = RdnSequence::default();
    if !orgs.is_empty() {
        let mut rdn = RelativeDistinguishedName::default();
        for o in orgs {
            rdn.insert(attr(ORGANIZATION_NAME, o)?)
                .map_err(named("organization", o))?;
        }
        seq.push(rdn);
    }
    if !cn.is_empty() {
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(attr(COMMON_NAME, cn)?)
            .map_err(named("common name", cn))?;
        seq.push(rdn);
    }
    Ok(Name::from_der(&seq.to_der()?)?)
}

fn attr(
    oid: const_oid::ObjectIdentifier,
    value: &str,
) -> Result<AttributeTypeAndValue, IssueError> {
    let encoded = match PrintableStringRef::new(value) {
        Ok(p) => Any::encode_from(&p),
        Err(_) => Any::encode_from(&value.to_string()),
    }
    .map_err(|source| IssueError::Attribute {
        value: value.to_string(),
        source,
    })?;
    Ok(AttributeTypeAndValue {
        oid,
        value: encoded,
    })
}

fn extensions(
    t: &CertTemplate,
    subject: &Name,
    spki: &spki::SubjectPublicKeyInfoOwned,
    issuer_ski: Option<Vec<u8>>,
) -> Result<Vec<Extension>, IssueError> {
    let mut out: Vec<Extension> = Vec::new();
    let mut push = |e: Result<Extension, der::Error>| -> Result<(), IssueError> {
        out.push(e?);
        Ok(())
    };
    let mut ku = KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment;
    if t.is_ca {
        ku |= KeyUsages::KeyCertSign;
    }
    push(ext(&KeyUsage(ku), true))?;
    let mut ekus = Vec::new();
    if t.server_auth {
        ekus.push(ID_KP_SERVER_AUTH);
    }
    if t.client_auth {
        ekus.push(ID_KP_CLIENT_AUTH);
    }
    if !ekus.is_empty() {
        push(ext(&ExtendedKeyUsage(ekus), false))?;
    }
    if t.is_ca {
        push(ext(
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
            true,
        ))?;
        // Go derives the SKI of a CA as SHA-1 of the public key bits.
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            spki.subject_public_key.raw_bytes(),
        );
        push(ext(
            &SubjectKeyIdentifier(OctetString::new(digest.as_ref())?),
            false,
        ))?;
    }
    if let Some(ski) = issuer_ski {
        push(ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(ski)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        ))?;
    }
    let names = general_names(t)?;
    if !names.is_empty() {
        // RFC 5280: the SAN extension is critical when the subject is empty.
        push(ext(&SubjectAltName(names), subject.is_empty()))?;
    }
    Ok(out)
}

/// The template's SANs as GeneralNames, DNS names first then IPs (Go's order), for a
/// certificate or a request.
pub(crate) fn general_names(t: &CertTemplate) -> Result<Vec<GeneralName>, IssueError> {
    let mut names = Vec::new();
    for d in &t.dns_names {
        names.push(GeneralName::DnsName(
            Ia5String::new(d).map_err(|_| IssueError::DnsNotAscii(d.clone()))?,
        ));
    }
    names.extend(t.ip_addresses.iter().map(|ip| GeneralName::from(*ip)));
    Ok(names)
}

/// Criticality as Go's crypto/x509 sets it, spelled out rather than left to trait defaults.
fn ext<T: const_oid::AssociatedOid + Encode>(
    value: &T,
    critical: bool,
) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// X.509 times have whole seconds: the fraction is dropped, as Go's encoder drops it.
fn to_time(t: OffsetDateTime) -> Result<Time, IssueError> {
    let whole = t - time::Duration::nanoseconds(i64::from(t.nanosecond()));
    Time::try_from(SystemTime::from(whole)).map_err(|source| IssueError::Time { time: t, source })
}

/// A positive 63-bit random serial, as kubeadm draws them.
fn random_serial() -> Result<SerialNumber, IssueError> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(CryptoError::from)?;
    b[0] &= 0x7f;
    if b[0] == 0 {
        // Keep the DER minimal and the value non-zero without biasing much.
        b[0] = 0x01;
    }
    Ok(SerialNumber::new(&b)?)
}

struct Profile {
    subject: Name,
    issuer: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// Lets x509-cert's builder ask for the signature algorithm and issuer key; the signature
/// itself is made by [`PrivateKey::sign`] between `finalize` and `assemble`.
pub(crate) struct SignerAdapter<'a>(pub(crate) &'a PrivateKey);

#[derive(Clone)]
pub(crate) struct VerifyingKey(Vec<u8>);

impl EncodePublicKey for VerifyingKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

impl signature::Keypair for SignerAdapter<'_> {
    type VerifyingKey = VerifyingKey;
    fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.public_key_der().to_vec())
    }
}

impl DynSignatureAlgorithmIdentifier for SignerAdapter<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.0.signature_algorithm())
    }
}

/// Parses an IP or returns the string as a DNS name: how kubeadm sorts extra SANs.
pub fn split_san(s: &str) -> Result<IpAddr, &str> {
    IpAddr::from_str(s).map_err(|_| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::KeyAlgorithm;
    use time::Duration;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-23 12:00 UTC)
    }

    #[test]
    fn ca_and_leaf_chain_and_fields() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa2048,
        ] {
            let ca_key = PrivateKey::generate(alg).unwrap();
            let ca_t = CertTemplate {
                common_name: "kubernetes".into(),
                is_ca: true,
                ..Default::default()
            };
            let ca = issue(
                &ca_t,
                ca_key.public_key_der(),
                Signer::SelfSigned(&ca_key),
                now(),
                now() + Duration::days(3650),
            )
            .unwrap();
            assert!(ca.is_ca && ca.is_self_issued() && ca.is_signed_by(&ca));
            let ku = ca.key_usage.unwrap();
            assert!(ku.critical && ku.key_cert_sign && ku.digital_signature && ku.key_encipherment);

            let leaf_key = PrivateKey::generate(alg).unwrap();
            let t = CertTemplate {
                common_name: "user".into(),
                organizations: vec!["b-group".into(), "a:group".into(), "ünïcode".into()],
                client_auth: true,
                server_auth: true,
                dns_names: vec!["node-1".into()],
                ip_addresses: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
                ..Default::default()
            };
            let leaf = issue(
                &t,
                leaf_key.public_key_der(),
                Signer::Ca {
                    cert: &ca,
                    key: &ca_key,
                },
                now(),
                now() + Duration::days(365),
            )
            .unwrap();
            assert!(leaf.is_signed_by(&ca));
            assert!(!leaf.is_ca);
            assert_eq!(leaf.common_name, "user");
            let mut orgs = leaf.organizations.clone();
            orgs.sort();
            assert_eq!(orgs, vec!["a:group", "b-group", "ünïcode"]);
            assert_eq!(leaf.dns_names, vec!["node-1"]);
            assert_eq!(leaf.ip_addresses.len(), 2);
            assert!(leaf.server_auth && leaf.client_auth);
            assert_eq!(leaf.not_after, now() + Duration::days(365));
            assert!(leaf_key.matches_public_key(leaf.public_key_der()));
            assert!(!ca_key.matches_public_key(leaf.public_key_der()));
        }
    }
}
