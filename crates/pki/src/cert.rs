//! Reading certificates: the facts kubepki checks, extracted once from the DER.
//!
//! Parsing uses x509-parser, which is lenient with real-world encodings and never panics on
//! input; signatures are checked with aws-lc-rs through its `verify-aws` feature.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::key::{KeyAlgorithm, pem_encode};

/// Key usage bits kubeadm sets (RFC 5280 4.2.1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsage {
    pub digital_signature: bool,
    pub key_encipherment: bool,
    pub key_cert_sign: bool,
    pub critical: bool,
    /// Any other bit (nonRepudiation, keyAgreement, cRLSign, ...).
    pub other: bool,
}

/// A parsed X.509 certificate.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    pub common_name: String,
    pub organizations: Vec<String>,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub key_usage: Option<KeyUsage>,
    pub server_auth: bool,
    pub client_auth: bool,
    /// EKUs other than serverAuth/clientAuth, and anyExtendedKeyUsage.
    pub other_ext_key_usage: bool,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    spki: Vec<u8>,
    pub subject_key_id: Option<Vec<u8>>,
    pub serial_hex: String,
    /// The subject key's algorithm, when it is one kubeadm supports.
    pub key_algorithm: Option<KeyAlgorithm>,
}

impl Certificate {
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (rest, x) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing data after certificate".into());
        }
        let mut c = Certificate {
            der: der.to_vec(),
            common_name: String::new(),
            organizations: Vec::new(),
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
            is_ca: false,
            key_usage: None,
            server_auth: false,
            client_auth: false,
            other_ext_key_usage: false,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            emails: Vec::new(),
            uris: Vec::new(),
            spki: x.public_key().raw.to_vec(),
            subject_key_id: None,
            serial_hex: x.raw_serial_as_string(),
            key_algorithm: key_algorithm(x.public_key()),
        };
        for cn in x.subject().iter_common_name() {
            c.common_name = cn
                .as_str()
                .map_err(|e| format!("subject CN: {e}"))?
                .to_string();
        }
        for o in x.subject().iter_organization() {
            c.organizations.push(
                o.as_str()
                    .map_err(|e| format!("subject O: {e}"))?
                    .to_string(),
            );
        }
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => c.is_ca = bc.ca,
                ParsedExtension::KeyUsage(ku) => {
                    c.key_usage = Some(KeyUsage {
                        digital_signature: ku.digital_signature(),
                        key_encipherment: ku.key_encipherment(),
                        key_cert_sign: ku.key_cert_sign(),
                        critical: ext.critical,
                        other: ku.flags & !(1 | 4 | 32) != 0,
                    })
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    c.server_auth = eku.server_auth;
                    c.client_auth = eku.client_auth;
                    c.other_ext_key_usage = eku.any
                        || eku.code_signing
                        || eku.email_protection
                        || eku.time_stamping
                        || eku.ocsp_signing
                        || !eku.other.is_empty();
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => c.dns_names.push(d.to_string()),
                            GeneralName::IPAddress(b) => c.ip_addresses.push(
                                ip_from_bytes(b)
                                    .ok_or_else(|| format!("IP SAN of {} bytes", b.len()))?,
                            ),
                            GeneralName::RFC822Name(e) => c.emails.push(e.to_string()),
                            GeneralName::URI(u) => c.uris.push(u.to_string()),
                            _ => {}
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(k) => c.subject_key_id = Some(k.0.to_vec()),
                ParsedExtension::ParseError { error } => {
                    return Err(format!("extension {}: {error}", ext.oid));
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// Every certificate in a PEM file, in file order (leaf first for chains). The PEM must be
    /// plain (see [`crate::pem::parse_all`]) and hold certificates only: a private key in a
    /// certificate file (mode 0644, copied into kubeconfigs) would be published with it.
    pub fn from_pem_chain(pem_bytes: &[u8]) -> Result<Vec<Self>, String> {
        Self::from_pem(pem_bytes, false)
    }

    /// As [`Certificate::from_pem_chain`], for a file that holds its certificate and its key
    /// together (the kubelet's `kubelet-client-current.pem`): one private key block may be
    /// there too.
    pub fn from_pem_with_key(pem_bytes: &[u8]) -> Result<Vec<Self>, String> {
        Self::from_pem(pem_bytes, true)
    }

    fn from_pem(pem_bytes: &[u8], key_allowed: bool) -> Result<Vec<Self>, String> {
        let blocks = crate::pem::parse_all(pem_bytes).map_err(|e| match e {
            crate::pem::PemError::NoBlock => "no CERTIFICATE PEM block found".to_string(),
            e => e.to_string(),
        })?;
        let is_key = |l: &str| l == "PRIVATE KEY" || l.ends_with(" PRIVATE KEY");
        if let Some((i, b)) = blocks
            .iter()
            .enumerate()
            .find(|(_, b)| b.label != "CERTIFICATE" && !(key_allowed && is_key(&b.label)))
        {
            let why = if is_key(&b.label) {
                "; a certificate file must not hold a private key (it would be published with the certificate)"
            } else {
                ""
            };
            return Err(format!(
                "PEM block #{} is {:?}, expected CERTIFICATE{why}",
                i + 1,
                b.label
            ));
        }
        let certs = blocks
            .iter()
            .filter(|b| b.label == "CERTIFICATE")
            .enumerate()
            .map(|(i, b)| {
                Certificate::from_der(&b.der).map_err(|e| {
                    if i == 0 {
                        e
                    } else {
                        format!("certificate #{} in chain: {e}", i + 1)
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err("no CERTIFICATE PEM block found".into());
        }
        Ok(certs)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    pub fn subject_der(&self) -> &[u8] {
        &self.subject_raw
    }

    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_raw
    }

    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// True when `issuer` issued this certificate: names match and the signature verifies.
    pub fn is_signed_by(&self, issuer: &Certificate) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        let (Ok((_, me)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(ca.public_key())).is_ok()
    }

    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn key_algorithm(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<KeyAlgorithm> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
    use x509_parser::public_key::PublicKey;
    match spki.parsed().ok()? {
        PublicKey::RSA(r) => match r.key_size() {
            2048 => Some(KeyAlgorithm::Rsa2048),
            3072 => Some(KeyAlgorithm::Rsa3072),
            4096 => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        },
        PublicKey::EC(_) => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 {
                Some(KeyAlgorithm::EcdsaP256)
            } else if curve == OID_NIST_EC_P384 {
                Some(KeyAlgorithm::EcdsaP384)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}
