//! PKCS#10 certificate signing requests: made for an external CA (names and SANs only: the
//! CA decides usages, SPEC §2), and read back (also for Kubernetes CSR objects).

use std::net::IpAddr;

use der::Encode;
use der::asn1::{BitString, Ia5String, OctetString, SetOfVec};
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName as PGeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::issue::{CertTemplate, subject_name};
use crate::key::{PrivateKey, pem_encode};

/// A CSR for `template`'s subject and SANs, signed by `key`. Like Go's x509 (and kubeadm), it
/// carries an extensionRequest only when there are SANs.
pub fn build(template: &CertTemplate, key: &PrivateKey) -> Result<String, String> {
    let subject = subject_name(&template.common_name, &template.organizations)?;
    let mut names = Vec::new();
    for d in &template.dns_names {
        names.push(GeneralName::DnsName(
            Ia5String::new(d).map_err(|_| format!("DNS name {d:?} is not ASCII"))?,
        ));
    }
    for ip in &template.ip_addresses {
        names.push(GeneralName::from(*ip));
    }
    let mut attributes = SetOfVec::new();
    if !names.is_empty() {
        let san = Extension {
            extn_id: <SubjectAltName as const_oid::AssociatedOid>::OID,
            critical: false,
            extn_value: OctetString::new(
                SubjectAltName(names).to_der().map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        };
        let attr: Attribute = ExtensionReq(vec![san])
            .try_into()
            .map_err(|e: der::Error| e.to_string())?;
        attributes.insert(attr).map_err(|e| e.to_string())?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: key.spki()?,
        attributes,
    };
    let tbs = info.to_der().map_err(|e| e.to_string())?;
    let sig = key.sign(&tbs)?;
    let req = CertReq {
        info,
        algorithm: key.signature_algorithm(),
        signature: BitString::from_bytes(&sig).map_err(|e| e.to_string())?,
    };
    Ok(pem_encode(
        "CERTIFICATE REQUEST",
        &req.to_der().map_err(|e| e.to_string())?,
    ))
}

/// What a CSR asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// e.g. "RSA-2048", "ECDSA-P256", "RSA-1024", "Ed25519".
    pub key_description: String,
    /// RSA modulus bits, or the EC field size.
    pub key_bits: usize,
    pub is_rsa: bool,
    pub is_ec: bool,
    /// For ECDSA keys: "P-256", "P-384" or "P-521"; None for other curves and key types.
    pub ec_curve: Option<&'static str>,
}

/// Parses a PEM CSR and checks its self-signature (proof that the requester holds the key).
pub fn parse_pem(pem_bytes: &[u8]) -> Result<CsrInfo, String> {
    parse_der(&pem_der(pem_bytes)?)
}

/// A parsed CSR whose self-signature is not checked yet.
pub struct Unverified {
    der: Vec<u8>,
    pub info: CsrInfo,
}

impl Unverified {
    /// Checks the self-signature (proof that the requester holds the key).
    pub fn verify(&self) -> Result<(), String> {
        verify(&from_der_exact(&self.der)?)
    }
}

/// Parses a PEM CSR without checking its signature yet: for callers that judge the key first
/// (the signature library refuses weak keys with a less helpful message).
pub fn parse_pem_unverified(pem_bytes: &[u8]) -> Result<Unverified, String> {
    let der = pem_der(pem_bytes)?;
    let info = info_of(&from_der_exact(&der)?)?;
    Ok(Unverified { der, info })
}

fn pem_der(pem_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let blocks = pem::parse_many(pem_bytes).map_err(|e| format!("not valid PEM: {e}"))?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
        .ok_or("no CERTIFICATE REQUEST PEM block found")?;
    Ok(block.into_contents())
}

fn from_der_exact(der: &[u8]) -> Result<X509CertificationRequest<'_>, String> {
    let (rest, req) =
        X509CertificationRequest::from_der(der).map_err(|e| format!("not a valid CSR: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing data after the CSR".into());
    }
    Ok(req)
}

fn verify(req: &X509CertificationRequest<'_>) -> Result<(), String> {
    req.verify_signature()
        .map_err(|e| format!("the CSR's signature does not verify: {e}"))
}

pub fn parse_der(der: &[u8]) -> Result<CsrInfo, String> {
    let req = from_der_exact(der)?;
    verify(&req)?;
    info_of(&req)
}

fn info_of(req: &X509CertificationRequest<'_>) -> Result<CsrInfo, String> {
    let info = &req.certification_request_info;
    let mut out = CsrInfo {
        common_name: String::new(),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        public_key: info.subject_pki.raw.to_vec(),
        key_description: String::new(),
        key_bits: 0,
        is_rsa: false,
        is_ec: false,
        ec_curve: None,
    };
    for cn in info.subject.iter_common_name() {
        out.common_name = cn
            .as_str()
            .map_err(|e| format!("subject CN: {e}"))?
            .to_string();
    }
    for o in info.subject.iter_organization() {
        out.organizations.push(
            o.as_str()
                .map_err(|e| format!("subject O: {e}"))?
                .to_string(),
        );
    }
    if let Some(exts) = req.requested_extensions() {
        for e in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = e {
                for n in &san.general_names {
                    match n {
                        PGeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                        PGeneralName::IPAddress(b) => out.ip_addresses.push(match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes")),
                            16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes")),
                            n => return Err(format!("IP SAN of {n} bytes")),
                        }),
                        PGeneralName::RFC822Name(m) => out.emails.push(m.to_string()),
                        PGeneralName::URI(u) => out.uris.push(u.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    use x509_parser::public_key::PublicKey;
    match info.subject_pki.parsed() {
        Ok(PublicKey::RSA(r)) => {
            out.is_rsa = true;
            out.key_bits = r.key_size();
            out.key_description = format!("RSA-{}", r.key_size());
        }
        Ok(PublicKey::EC(ec)) => {
            out.is_ec = true;
            // The point length alone cannot tell P-256 from secp256k1: name the curve by OID.
            let curve = info
                .subject_pki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            out.ec_curve = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Some("P-256"),
                Some("1.3.132.0.34") => Some("P-384"),
                Some("1.3.132.0.35") => Some("P-521"),
                _ => None,
            };
            out.key_bits = match out.ec_curve {
                Some("P-521") => 521,
                _ => ec.key_size(),
            };
            out.key_description = match (out.ec_curve, curve) {
                (Some(c), _) => format!("ECDSA-{}", c.replace('-', "")),
                (None, Some(oid)) => format!("ECDSA on curve {oid}"),
                (None, None) => "ECDSA on an unnamed curve".into(),
            };
        }
        // x509-parser has no Ed25519 variant: recognise it by its algorithm OID (RFC 8410).
        Ok(_) if info.subject_pki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            out.key_description = "Ed25519".into();
        }
        Ok(other) => {
            out.key_description = format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("unknown")
                .to_string()
        }
        Err(e) => return Err(format!("public key: {e}")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyAlgorithm;

    #[test]
    fn builds_and_reads_back() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
            let key = PrivateKey::generate(alg).unwrap();
            let t = CertTemplate {
                common_name: "system:node:n1".into(),
                organizations: vec!["system:nodes".into()],
                dns_names: vec!["n1".into()],
                ip_addresses: vec!["10.0.0.1".parse().unwrap()],
                ..Default::default()
            };
            let pem = build(&t, &key).unwrap();
            let info = parse_pem(pem.as_bytes()).unwrap();
            assert_eq!(info.common_name, "system:node:n1");
            assert_eq!(info.organizations, ["system:nodes"]);
            assert_eq!(info.dns_names, ["n1"]);
            assert_eq!(info.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
            assert!(key.matches_public_key(&info.public_key));
            assert_eq!(info.key_description, alg.as_str());
            // No SANs: no extension request at all.
            let bare = build(
                &CertTemplate {
                    common_name: "x".into(),
                    ..Default::default()
                },
                &key,
            )
            .unwrap();
            assert!(parse_pem(bare.as_bytes()).unwrap().dns_names.is_empty());
        }
    }

    #[test]
    fn rejects_tampering_and_garbage() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = build(
            &CertTemplate {
                common_name: "a".into(),
                ..Default::default()
            },
            &key,
        )
        .unwrap();
        let mut der = pem::parse(&pem).unwrap().into_contents();
        // Flip a byte inside the CN value: the signature no longer covers the content.
        let pos = der.windows(1).position(|w| w == b"a").unwrap();
        der[pos] = b'b';
        assert!(parse_der(&der).unwrap_err().contains("signature"));
        assert!(parse_pem(b"nope").is_err());
    }
}
