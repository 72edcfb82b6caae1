//! PKCS#10 certificate signing requests: made for an external CA (names and SANs only: the
//! CA decides usages), and read back (also for Kubernetes CSR objects).

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, SetOfVec};
use der::{Decode, Encode, Tagged};
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

pub use crate::error::CsrError;
use crate::error::IssueError;

use crate::crypto::issue::{CertTemplate, general_names, subject_name};
use crate::crypto::key::{PrivateKey, pem_encode};

/// A CSR for `template`'s subject and SANs, signed by `key`. Like Go's x509 (and kubeadm), it
/// carries an extensionRequest only when there are SANs.
pub fn build(template: &CertTemplate, key: &PrivateKey) -> Result<String, IssueError> {
    let subject = subject_name(&template.common_name, &template.organizations)?;
    let names = general_names(template)?;
    let mut attributes = SetOfVec::new();
    if !names.is_empty() {
        let san = Extension {
            extn_id: <SubjectAltName as const_oid::AssociatedOid>::OID,
            critical: false,
            extn_value: OctetString::new(SubjectAltName(names).to_der()?)?,
        };
        let attr: Attribute = ExtensionReq(vec![san]).try_into()?;
        attributes.insert(attr)?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: key.spki()?,
        attributes,
    };
    sign_info(info, key)
}

/// Signs a request body with `key`, as PEM.
fn sign_info(info: CertReqInfo, key: &PrivateKey) -> Result<String, IssueError> {
    let tbs = info.to_der()?;
    let sig = key.sign(&tbs)?;
    let req = CertReq {
        info,
        algorithm: key.signature_algorithm(),
        signature: BitString::from_bytes(&sig)?,
    };
    Ok(pem_encode("CERTIFICATE REQUEST", &req.to_der()?))
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
pub fn parse_pem(pem_bytes: &[u8]) -> Result<CsrInfo, CsrError> {
    let parsed = parse_pem_unverified(pem_bytes)?;
    parsed.verify()?;
    Ok(parsed.info)
}

/// A parsed CSR whose self-signature is not checked yet.
pub struct Unverified {
    req: CertReq,
    pub info: CsrInfo,
}

impl Unverified {
    /// Checks the self-signature (proof that the requester holds the key).
    pub fn verify(&self) -> Result<(), CsrError> {
        verify(&self.req)
    }
}

/// Parses a PEM CSR without checking its signature yet: for callers that judge the key first
/// (the signature library refuses weak keys with a less helpful message).
///
/// The PEM must be exactly one `CERTIFICATE REQUEST` block with only whitespace around it
/// (see [`crate::crypto::pem`]), and the request must read the same in every parser: DER (as Go's
/// `encoding/asn1` demands), a subject of CN and O attributes only, in UTF8String or PrintableString,
/// with at most one CN, at most one attribute (the extension request, with one
/// value), no extension twice, and SANs only of the kinds Go reads.
pub fn parse_pem_unverified(pem_bytes: &[u8]) -> Result<Unverified, CsrError> {
    let der = crate::crypto::pem::parse_one(pem_bytes, "CERTIFICATE REQUEST")?;
    let req = CertReq::from_der(&der).map_err(|e| CsrError::Der(e.to_string()))?;
    let info = info_of(&req)?;
    Ok(Unverified { req, info })
}

pub fn parse_der(der: &[u8]) -> Result<CsrInfo, CsrError> {
    let req = CertReq::from_der(der).map_err(|e| CsrError::Der(e.to_string()))?;
    let info = info_of(&req)?;
    verify(&req)?;
    Ok(info)
}

fn ambiguous(msg: impl Into<String>) -> CsrError {
    CsrError::Ambiguous(msg.into())
}

const OID_CN: ObjectIdentifier = const_oid::db::rfc4519::CN;
const OID_O: ObjectIdentifier = const_oid::db::rfc4519::O;
const OID_RSA: ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const OID_EC: ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
const OID_ED25519: ObjectIdentifier = const_oid::db::rfc8410::ID_ED_25519;

/// Go's PrintableString alphabet (encoding/asn1 also lets '*' and '&' through).
fn printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(&b)
}

fn text_value(v: &der::Any, what: &str) -> Result<String, CsrError> {
    match v.tag() {
        der::Tag::PrintableString if !v.value().iter().all(|&b| printable(b)) => {
            Err(CsrError::Der(format!(
                "subject {what} is a PrintableString with characters outside its alphabet"
            )))
        }
        der::Tag::Utf8String | der::Tag::PrintableString => std::str::from_utf8(v.value())
            .map(str::to_string)
            .map_err(|_| CsrError::Der(format!("subject {what} is not valid UTF-8"))),
        t => Err(ambiguous(format!(
            "subject {what} is a {t}; only UTF8String and PrintableString are accepted"
        ))),
    }
}

fn info_of(req: &CertReq) -> Result<CsrInfo, CsrError> {
    let info = &req.info;
    let mut out = CsrInfo {
        common_name: String::new(),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        public_key: info
            .public_key
            .to_der()
            .map_err(|e| CsrError::Der(e.to_string()))?,
        key_description: String::new(),
        key_bits: 0,
        is_rsa: false,
        is_ec: false,
        ec_curve: None,
    };
    // Go puts several O values into one multi-valued RDN; any RDN shape reads the same in
    // Go as long as only CN and O appear and CN appears once.
    let mut cns = 0;
    for atv in info.subject.iter_rdn().flat_map(|rdn| rdn.iter()) {
        if atv.oid == OID_CN {
            cns += 1;
            if cns > 1 {
                return Err(ambiguous("the subject has more than one common name"));
            }
            out.common_name = text_value(&atv.value, "CN")?;
        } else if atv.oid == OID_O {
            out.organizations.push(text_value(&atv.value, "O")?);
        } else {
            return Err(ambiguous(format!(
                "the subject has attribute {}; only CN and O are accepted",
                atv.oid
            )));
        }
    }
    let attributes: Vec<_> = info.attributes.iter().collect();
    if attributes.len() > 1 {
        return Err(ambiguous(format!(
            "{} attributes; only one extension request is accepted",
            attributes.len()
        )));
    }
    if let Some(attr) = attributes.first() {
        if attr.oid != const_oid::db::rfc5912::ID_EXTENSION_REQ {
            return Err(ambiguous(format!(
                "attribute {}; only an extension request is accepted",
                attr.oid
            )));
        }
        let values: Vec<_> = attr.values.iter().collect();
        if values.len() != 1 {
            return Err(ambiguous(format!(
                "the extension request has {} values; one is accepted",
                values.len()
            )));
        }
        let exts: ExtensionReq = values[0]
            .decode_as()
            .map_err(|e| CsrError::Der(format!("extension request: {e}")))?;
        let mut seen = std::collections::BTreeSet::new();
        for ext in &exts.0 {
            if !seen.insert(ext.extn_id) {
                return Err(ambiguous(format!(
                    "extension {} appears twice",
                    ext.extn_id
                )));
            }
            if ext.extn_id == <SubjectAltName as const_oid::AssociatedOid>::OID {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| CsrError::Der(format!("subject alternative names: {e}")))?;
                add_names(&mut out, &san)?;
            }
        }
    }
    describe_key(&mut out, &info.public_key)?;
    Ok(out)
}

fn add_names(out: &mut CsrInfo, san: &SubjectAltName) -> Result<(), CsrError> {
    for n in &san.0 {
        match n {
            GeneralName::DnsName(d) => out.dns_names.push(d.to_string()),
            GeneralName::Rfc822Name(m) => out.emails.push(m.to_string()),
            GeneralName::UniformResourceIdentifier(u) => out.uris.push(u.to_string()),
            GeneralName::IpAddress(b) => out.ip_addresses.push(
                match b.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(b.as_bytes()).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(b.as_bytes()).map(IpAddr::from).ok(),
                    _ => None,
                }
                .ok_or_else(|| CsrError::Der(format!("IP SAN of {} bytes", b.as_bytes().len())))?,
            ),
            other => {
                return Err(ambiguous(format!(
                    "a subject alternative name of a kind Go does not read ({})",
                    match other {
                        GeneralName::OtherName(_) => "otherName",
                        GeneralName::DirectoryName(_) => "directoryName",
                        GeneralName::EdiPartyName(_) => "ediPartyName",
                        _ => "registeredID",
                    }
                )));
            }
        }
    }
    Ok(())
}

/// RSAPublicKey (RFC 8017): only the modulus length matters here.
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

fn describe_key(out: &mut CsrInfo, spki: &spki::SubjectPublicKeyInfoOwned) -> Result<(), CsrError> {
    let oid = spki.algorithm.oid;
    if oid == OID_RSA {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| CsrError::Der("RSA public key is not whole bytes".into()))?;
        let key = RsaPublicKey::from_der(bits)
            .map_err(|e| CsrError::Der(format!("RSA public key: {e}")))?;
        let _ = key.public_exponent;
        let m = key.modulus.as_bytes();
        let size = match m.first() {
            None => 0,
            Some(b) => (m.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        };
        out.is_rsa = true;
        out.key_bits = size;
        out.key_description = format!("RSA-{size}");
    } else if oid == OID_EC {
        out.is_ec = true;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        out.ec_curve = match curve {
            Some(c) if c == const_oid::db::rfc5912::SECP_256_R_1 => Some("P-256"),
            Some(c) if c == const_oid::db::rfc5912::SECP_384_R_1 => Some("P-384"),
            Some(c) if c == const_oid::db::rfc5912::SECP_521_R_1 => Some("P-521"),
            _ => None,
        };
        out.key_bits = match out.ec_curve {
            Some("P-256") => 256,
            Some("P-384") => 384,
            Some("P-521") => 521,
            _ => 0,
        };
        out.key_description = match (out.ec_curve, curve) {
            (Some(c), _) => format!("ECDSA-{}", c.replace('-', "")),
            (None, Some(oid)) => format!("ECDSA on curve {oid}"),
            (None, None) => "ECDSA on an unnamed curve".into(),
        };
    } else if oid == OID_ED25519 {
        out.key_description = "Ed25519".into();
    } else {
        out.key_description = format!("key algorithm {oid}");
    }
    Ok(())
}

/// The self-signature, with the algorithms Go's x509 accepts for requests (SHA-1 aside).
fn verify(req: &CertReq) -> Result<(), CsrError> {
    use aws_lc_rs::signature as sig;
    let bad = |m: &str| CsrError::Signature(m.to_string());
    let tbs = req
        .info
        .to_der()
        .map_err(|e| CsrError::Der(e.to_string()))?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| bad("the signature is not whole bytes"))?;
    let spki = &req.info.public_key;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("the public key is not whole bytes"))?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let p256 = curve == Some(const_oid::db::rfc5912::SECP_256_R_1);
    let p384 = curve == Some(const_oid::db::rfc5912::SECP_384_R_1);
    use const_oid::db::rfc5912 as o;
    let alg: &dyn sig::VerificationAlgorithm = match (spki.algorithm.oid, req.algorithm.oid) {
        (OID_RSA, o::SHA_256_WITH_RSA_ENCRYPTION) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA, o::SHA_384_WITH_RSA_ENCRYPTION) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA, o::SHA_512_WITH_RSA_ENCRYPTION) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (OID_EC, o::ECDSA_WITH_SHA_256) if p256 => &sig::ECDSA_P256_SHA256_ASN1,
        (OID_EC, o::ECDSA_WITH_SHA_384) if p256 => &sig::ECDSA_P256_SHA384_ASN1,
        (OID_EC, o::ECDSA_WITH_SHA_256) if p384 => &sig::ECDSA_P384_SHA256_ASN1,
        (OID_EC, o::ECDSA_WITH_SHA_384) if p384 => &sig::ECDSA_P384_SHA384_ASN1,
        (OID_ED25519, OID_ED25519) => &sig::ED25519,
        (k, s) => {
            return Err(CsrError::Signature(format!(
                "unsupported combination of key algorithm {k} and signature algorithm {s}"
            )));
        }
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(&tbs, signature)
        .map_err(|_| bad("it was not made by the request's key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key::KeyAlgorithm;
    use der::asn1::Ia5String;

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

    /// A request for `names`, with `edit` applied to its body before signing.
    fn crafted(edit: impl FnOnce(&mut CertReqInfo)) -> String {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let t = CertTemplate {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec!["n1".into()],
            ..Default::default()
        };
        let pem = build(&t, &key).unwrap();
        let der = crate::crypto::pem::parse_one(pem.as_bytes(), "CERTIFICATE REQUEST").unwrap();
        let mut info = CertReq::from_der(&der).unwrap().info;
        edit(&mut info);
        sign_info(info, &key).unwrap()
    }

    fn rdn(oid: ObjectIdentifier, value: der::Any) -> x509_cert::name::RelativeDistinguishedName {
        vec![x509_cert::attr::AttributeTypeAndValue { oid, value }]
            .try_into()
            .unwrap()
    }

    fn with_rdns(info: &mut CertReqInfo, extra: Vec<x509_cert::name::RelativeDistinguishedName>) {
        let mut seq = x509_cert::name::RdnSequence::from(info.subject.clone());
        for r in extra {
            seq.push(r);
        }
        info.subject = x509_cert::name::Name::from_der(&seq.to_der().unwrap()).unwrap();
    }

    fn ext_req(exts: Vec<Extension>) -> Attribute {
        ExtensionReq(exts).try_into().unwrap()
    }

    fn san_ext(names: Vec<GeneralName>) -> Extension {
        Extension {
            extn_id: <SubjectAltName as const_oid::AssociatedOid>::OID,
            critical: false,
            extn_value: OctetString::new(SubjectAltName(names).to_der().unwrap()).unwrap(),
        }
    }

    fn dns(d: &str) -> GeneralName {
        GeneralName::DnsName(Ia5String::new(d).unwrap())
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        let utf8 = |s: &str| der::Any::encode_from(&s.to_string()).unwrap();
        let cases: Vec<(&str, String)> = vec![
            (
                "two common names",
                crafted(|i| with_rdns(i, vec![rdn(OID_CN, utf8("system:node:n2"))])),
            ),
            (
                "a BMPString common name",
                crafted(|i| {
                    let bmp: Vec<u8> = "system:node:n2"
                        .encode_utf16()
                        .flat_map(|c| c.to_be_bytes())
                        .collect();
                    let mut seq = x509_cert::name::RdnSequence::default();
                    seq.push(rdn(
                        OID_CN,
                        der::Any::new(der::Tag::BmpString, bmp).unwrap(),
                    ));
                    i.subject = x509_cert::name::Name::from_der(&seq.to_der().unwrap()).unwrap();
                }),
            ),
            (
                "an OU",
                crafted(|i| with_rdns(i, vec![rdn(const_oid::db::rfc4519::OU, utf8("x"))])),
            ),
            (
                "two extension requests",
                crafted(|i| {
                    i.attributes
                        .insert(ext_req(vec![san_ext(vec![dns("n2")])]))
                        .unwrap();
                }),
            ),
            (
                "an extension request with two values",
                crafted(|i| {
                    let mut a: Vec<Attribute> = i.attributes.iter().cloned().collect();
                    let second = ext_req(vec![san_ext(vec![dns("kubernetes.default.svc")])]);
                    a[0].values
                        .insert(second.values.iter().next().unwrap().clone())
                        .unwrap();
                    i.attributes = SetOfVec::try_from(a).unwrap();
                }),
            ),
            (
                "the SAN extension twice",
                crafted(|i| {
                    i.attributes = SetOfVec::try_from(vec![ext_req(vec![
                        san_ext(vec![dns("n1")]),
                        san_ext(vec![dns("n2")]),
                    ])])
                    .unwrap();
                }),
            ),
            (
                "a registeredID SAN",
                crafted(|i| {
                    i.attributes = SetOfVec::try_from(vec![ext_req(vec![san_ext(vec![
                        dns("n1"),
                        GeneralName::RegisteredId(OID_CN),
                    ])])])
                    .unwrap();
                }),
            ),
        ];
        for (what, pem) in cases {
            match parse_pem(pem.as_bytes()) {
                Err(CsrError::Ambiguous(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        // Go's own encoding of several organizations (one multi-valued RDN) reads plainly.
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let t = CertTemplate {
            common_name: "x".into(),
            organizations: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let info = parse_pem(build(&t, &key).unwrap().as_bytes()).unwrap();
        assert_eq!(info.organizations, ["a", "b"]);
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
        let mut der = crate::crypto::pem::parse_one(pem.as_bytes(), "CERTIFICATE REQUEST").unwrap();
        // Flip a byte inside the CN value: the signature no longer covers the content.
        let pos = der.windows(1).position(|w| w == b"a").unwrap();
        der[pos] = b'b';
        assert!(matches!(parse_der(&der), Err(CsrError::Signature(_))));
        assert!(parse_pem(b"nope").is_err());
    }
}
