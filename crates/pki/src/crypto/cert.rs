//! Reading certificates: the facts kubepki checks, extracted once from the DER.
//!
//! Every file kubepki checks is then used by Go programs (kube-apiserver, the kubelet, etcd),
//! so a certificate is read step for step as Go's `crypto/x509` (`parser.go`, Go 1.19, the Go
//! Kubernetes is built with here) reads it, with the DER rules of Go's cryptobyte
//! ([`crate::crypto::asn1`]). What Go refuses is refused, with the reason; where Go would read less
//! than the DER holds (extensions in a version 1 or 2 certificate, which Go skips) or where Go
//! parses but then refuses to verify (an unhandled critical extension), the certificate is
//! refused too, so kubepki never judges a certificate by facts its users do not see. Where Go
//! is lenient beyond DER (BER-ish times with offsets, leading-zero OID arcs, trailing bytes
//! inside structures, negative serials, which newer Go refuses) kubepki is stricter.
//! Signatures are checked with aws-lc-rs, for the algorithms Go's `CheckSignatureFrom` accepts.

use std::net::IpAddr;

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use time::OffsetDateTime;

use crate::crypto::asn1::{BitString, Der, oid_string, tag};
use crate::crypto::key::{KeyAlgorithm, pem_encode};
use crate::error::CertError;

/// Key usage bits kubeadm sets (RFC 5280 4.2.1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsage {
    pub digital_signature: bool,
    pub key_encipherment: bool,
    pub key_cert_sign: bool,
    pub critical: bool,
    /// Any other bit Go reads (nonRepudiation, keyAgreement, cRLSign, encipherOnly, decipherOnly).
    pub other: bool,
}

/// A parsed X.509 certificate.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    pub common_name: String,
    pub organizations: Vec<String>,
    /// The subject's attributes as Go's pkix.Name holds them (for labels and reports).
    pub subject: Name,
    pub issuer: Name,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint: how many intermediates may follow below this CA.
    pub max_path_len: Option<u64>,
    /// The certificate carries a name constraints extension.
    pub name_constrained: bool,
    pub key_usage: Option<KeyUsage>,
    pub server_auth: bool,
    pub client_auth: bool,
    /// EKUs other than serverAuth/clientAuth, and anyExtendedKeyUsage.
    pub other_ext_key_usage: bool,
    /// An extendedKeyUsage extension is present (without one, every usage is allowed).
    pub ext_key_usage_present: bool,
    /// anyExtendedKeyUsage is among them.
    pub any_ext_key_usage: bool,
    pub dns_names: Vec<String>,
    /// IP SANs; a 16-byte IPv4-mapped address reads as the IPv4 address, as Go treats it.
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    spki: Vec<u8>,
    pub subject_key_id: Option<Vec<u8>>,
    pub serial_hex: String,
    /// The serial number's big-endian magnitude (never negative: those are refused).
    pub serial: Vec<u8>,
    /// The subject key's algorithm, when it is one kubeadm supports.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Where the signed part (TBSCertificate) lies in `der`.
    tbs: std::ops::Range<usize>,
    signature: Vec<u8>,
    signature_algorithm: SigAlg,
    public_key: PublicKey,
}

/// The subject public key, as Go's parsePublicKey reads it.
#[derive(Clone, Debug)]
enum PublicKey {
    /// PKCS#1 RSAPublicKey DER.
    Rsa {
        pkcs1: Vec<u8>,
        /// The modulus' size.
        bits: u32,
    },
    /// An uncompressed point on a named curve.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithms Go's CheckSignatureFrom verifies (SHA-1 and MD5 are refused there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SigAlg {
    RsaPkcs1(Hash),
    RsaPss(Hash),
    Ecdsa(Hash),
    Ed25519,
    /// Unknown, insecure, or with parameters Go does not accept: never verifies.
    Other,
}

// OIDs as DER content bytes: read_oid only returns minimal encodings, so bytes compare as arcs.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
const OID_C: &[u8] = &[0x55, 0x04, 0x06];
const OID_L: &[u8] = &[0x55, 0x04, 0x07];
const OID_ST: &[u8] = &[0x55, 0x04, 0x08];
const OID_STREET: &[u8] = &[0x55, 0x04, 0x09];
const OID_AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
const OID_EKU_SERVER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_EKU_CLIENT: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const OID_EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
const DER_NULL: &[u8] = &[0x05, 0x00];

fn malformed(what: &str) -> CertError {
    CertError::from(format!("malformed {what}"))
}

impl Certificate {
    /// The RSA modulus' size in bits, of any RSA key (`key_algorithm` names only the sizes
    /// kubeadm issues); `None` for other keys.
    pub fn rsa_bits(&self) -> Option<u32> {
        match self.public_key {
            PublicKey::Rsa { bits, .. } => Some(bits),
            _ => None,
        }
    }

    /// Parses one DER certificate as Go's `x509.ParseCertificate` does (see the module doc).
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let mut input = Der(der);
        let whole = input
            .read_element(tag::SEQUENCE)
            .ok_or_else(|| malformed("certificate"))?;
        if !input.is_empty() {
            return Err("trailing data after certificate".into());
        }
        let mut cert = Der(whole)
            .read(tag::SEQUENCE)
            .ok_or_else(|| malformed("certificate"))?;
        let tbs_raw = cert
            .read_element(tag::SEQUENCE)
            .ok_or_else(|| malformed("TBSCertificate"))?;
        let tbs_start = tbs_raw.as_ptr() as usize - der.as_ptr() as usize;
        let mut tbs = Der(tbs_raw)
            .read(tag::SEQUENCE)
            .ok_or_else(|| malformed("TBSCertificate"))?;

        let version = match tbs
            .read_optional(tag::ctx_cons(0))
            .ok_or_else(|| malformed("version"))?
        {
            None => 1,
            Some(mut v) => {
                let n = v.read_i64().ok_or_else(|| malformed("version"))?;
                if !v.is_empty() || n < 0 {
                    return Err(malformed("version"));
                }
                n.saturating_add(1)
            }
        };
        if version > 3 {
            return Err(format!(
                "unsupported version {version} (X.509 has versions 1 to 3; Go refuses others)"
            )
            .into());
        }
        let serial = tbs
            .read_integer_bytes()
            .ok_or_else(|| malformed("serial number"))?;
        if serial[0] & 0x80 != 0 {
            // Go 1.19 reads it; Go 1.23 and later refuse it (x509negativeserial).
            return Err("negative serial number (refused by current Go)".into());
        }
        let inner_alg = tbs
            .read(tag::SEQUENCE)
            .ok_or_else(|| malformed("signature algorithm"))?;
        let outer_alg = cert
            .read(tag::SEQUENCE)
            .ok_or_else(|| malformed("signature algorithm"))?;
        if inner_alg.0 != outer_alg.0 {
            return Err(
                "the signature algorithm inside the signed part differs from the one outside it"
                    .into(),
            );
        }
        let (sig_oid, sig_params) = parse_ai(inner_alg).ok_or("malformed signature algorithm")?;
        let signature_algorithm = signature_algorithm(sig_oid, sig_params);

        let issuer_raw = tbs
            .read_element(tag::SEQUENCE)
            .ok_or_else(|| malformed("issuer"))?;
        let issuer = parse_name(issuer_raw).map_err(|e| format!("issuer: {e}"))?;
        let mut validity = tbs
            .read(tag::SEQUENCE)
            .ok_or_else(|| malformed("validity"))?;
        let not_before = parse_time(&mut validity).map_err(|e| format!("notBefore: {e}"))?;
        let not_after = parse_time(&mut validity).map_err(|e| format!("notAfter: {e}"))?;
        if !validity.is_empty() {
            return Err(malformed("validity"));
        }
        let subject_raw = tbs
            .read_element(tag::SEQUENCE)
            .ok_or_else(|| malformed("subject"))?;
        let subject = parse_name(subject_raw).map_err(|e| format!("subject: {e}"))?;
        let spki = tbs
            .read_element(tag::SEQUENCE)
            .ok_or_else(|| malformed("subject public key info"))?;
        let (public_key, key_algorithm) =
            parse_public_key(spki).map_err(|e| format!("public key: {e}"))?;

        let mut c = Certificate {
            der: der.to_vec(),
            common_name: subject.common_name.clone().unwrap_or_default(),
            organizations: subject.organizations.clone(),
            subject,
            issuer,
            subject_raw: subject_raw.to_vec(),
            issuer_raw: issuer_raw.to_vec(),
            not_before,
            not_after,
            is_ca: false,
            max_path_len: None,
            name_constrained: false,
            key_usage: None,
            server_auth: false,
            client_auth: false,
            other_ext_key_usage: false,
            ext_key_usage_present: false,
            any_ext_key_usage: false,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            emails: Vec::new(),
            uris: Vec::new(),
            spki: spki.to_vec(),
            subject_key_id: None,
            serial_hex: serial
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            serial: serial.to_vec(),
            key_algorithm,
            tbs: tbs_start..tbs_start + tbs_raw.len(),
            signature: Vec::new(),
            signature_algorithm,
            public_key,
        };

        if version >= 2 {
            // Go skips the unique identifiers without looking into them.
            for n in [1, 2] {
                tbs.read_optional(tag::ctx(n))
                    .ok_or_else(|| malformed("unique identifier"))?;
            }
        }
        if version == 3 {
            if let Some(mut exts) = tbs
                .read_optional(tag::ctx_cons(3))
                .ok_or_else(|| malformed("extensions"))?
            {
                let list = exts
                    .read(tag::SEQUENCE)
                    .ok_or_else(|| malformed("extensions"))?;
                if !exts.is_empty() {
                    return Err(malformed("extensions"));
                }
                c.read_extensions(list)?;
            }
        } else if tbs.peek(tag::ctx_cons(3)) {
            return Err(format!(
                "a version {version} certificate with extensions: Go ignores extensions before \
                 version 3 (it would see no SANs, no key usages and no CA flag)"
            )
            .into());
        }
        if !tbs.is_empty() {
            return Err(format!(
                "unexpected data after the public key of a version {version} certificate"
            )
            .into());
        }
        c.signature = cert
            .read_bit_string_bytes()
            .ok_or_else(|| malformed("signature"))?
            .to_vec();
        if !cert.is_empty() {
            return Err("unexpected data after the signature".into());
        }
        Ok(c)
    }

    /// Go's parse of the extensions list and processExtensions.
    fn read_extensions(&mut self, mut list: Der<'_>) -> Result<(), CertError> {
        let mut seen: Vec<&[u8]> = Vec::new();
        while !list.is_empty() {
            let mut e = list
                .read(tag::SEQUENCE)
                .ok_or_else(|| malformed("extension"))?;
            let oid = e.read_oid().ok_or_else(|| malformed("extension OID"))?;
            let name = oid_string(oid);
            let critical = if e.peek(tag::BOOLEAN) {
                e.read_bool()
                    .ok_or_else(|| malformed(&format!("critical flag of extension {name}")))?
            } else {
                false
            };
            let value = e
                .read(tag::OCTET_STRING)
                .ok_or_else(|| malformed(&format!("extension {name}")))?;
            if !e.is_empty() {
                return Err(malformed(&format!("extension {name}")));
            }
            if seen.contains(&oid) {
                return Err(format!(
                    "extension {name} appears twice (Go refuses such a certificate: \
                     \"certificate contains duplicate extensions\")"
                )
                .into());
            }
            seen.push(oid);
            let handled = self
                .read_extension(oid, critical, value)
                .map_err(|e| format!("extension {name}: {e}"))?;
            if critical && !handled {
                return Err(format!(
                    "critical extension {name} that Go does not process: Go's verification \
                     refuses any chain holding such a certificate"
                )
                .into());
            }
        }
        Ok(())
    }

    /// One extension as Go's processExtensions reads it; false when Go leaves it unhandled.
    fn read_extension(
        &mut self,
        oid: &[u8],
        critical: bool,
        value: Der<'_>,
    ) -> Result<bool, CertError> {
        let mut v = value;
        // The extensions Go reads are id-ce (2.5.29.n) and AIA.
        let id = match oid {
            [0x55, 0x1d, n] => *n,
            _ if oid == OID_AIA => return read_aia(v).map(|()| true),
            _ => return Ok(false),
        };
        match id {
            15 => {
                let bits = v.read_bit_string().ok_or("invalid key usage")?;
                end(v, "key usage")?;
                self.key_usage = Some(key_usage(&bits, critical));
            }
            19 => {
                let mut bc = v.read(tag::SEQUENCE).ok_or("invalid basic constraints")?;
                end(v, "basic constraints")?;
                if bc.peek(tag::BOOLEAN) {
                    self.is_ca = bc.read_bool().ok_or("invalid basic constraints")?;
                }
                if bc.peek(tag::INTEGER) {
                    let n = bc.read_i64().ok_or("invalid basic constraints")?;
                    // Go keeps it only on a CA, and a negative one means "no limit".
                    self.max_path_len = u64::try_from(n).ok().filter(|_| self.is_ca);
                }
                end(bc, "basic constraints")?;
            }
            17 => {
                self.read_san(v)?;
                // Go treats a SAN extension it reads nothing from as unhandled.
                return Ok(!(self.dns_names.is_empty()
                    && self.emails.is_empty()
                    && self.ip_addresses.is_empty()
                    && self.uris.is_empty()));
            }
            30 => {
                self.name_constrained = true;
                return read_name_constraints(v);
            }
            31 => read_crl_distribution_points(v)?,
            35 => {
                let mut akid = v
                    .read(tag::SEQUENCE)
                    .ok_or("invalid authority key identifier")?;
                end(v, "authority key identifier")?;
                if akid.peek(tag::ctx(0)) {
                    akid.read(tag::ctx(0))
                        .ok_or("invalid authority key identifier")?;
                }
            }
            37 => {
                let mut list = v.read(tag::SEQUENCE).ok_or("invalid extended key usages")?;
                end(v, "extended key usages")?;
                self.ext_key_usage_present = true;
                while !list.is_empty() {
                    let eku = list.read_oid().ok_or("invalid extended key usages")?;
                    match eku {
                        OID_EKU_SERVER => self.server_auth = true,
                        OID_EKU_CLIENT => self.client_auth = true,
                        OID_EKU_ANY => {
                            self.any_ext_key_usage = true;
                            self.other_ext_key_usage = true;
                        }
                        _ => self.other_ext_key_usage = true,
                    }
                }
            }
            14 => {
                let skid = v
                    .read(tag::OCTET_STRING)
                    .ok_or("invalid subject key identifier")?;
                end(v, "subject key identifier")?;
                self.subject_key_id = Some(skid.0.to_vec());
            }
            32 => {
                let mut list = v
                    .read(tag::SEQUENCE)
                    .ok_or("invalid certificate policies")?;
                end(v, "certificate policies")?;
                while !list.is_empty() {
                    let mut p = list
                        .read(tag::SEQUENCE)
                        .ok_or("invalid certificate policies")?;
                    p.read_oid().ok_or("invalid certificate policies")?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Go's parseSANExtension. Entries of other kinds (otherName, directoryName, ...) are
    /// skipped, as Go skips them.
    fn read_san(&mut self, mut v: Der<'_>) -> Result<(), CertError> {
        let mut list = v
            .read(tag::SEQUENCE)
            .ok_or("invalid subject alternative names")?;
        end(v, "subject alternative names")?;
        while !list.is_empty() {
            let (t, data) = list.read_any().ok_or("invalid subject alternative name")?;
            let data = data.0;
            match t {
                0x81 => self
                    .emails
                    .push(ia5(data).ok_or("SAN rfc822Name is malformed")?),
                0x82 => self
                    .dns_names
                    .push(ia5(data).ok_or("SAN dNSName is malformed")?),
                0x86 => {
                    let uri = ia5(data).ok_or("SAN uniformResourceIdentifier is malformed")?;
                    check_uri(&uri)?;
                    self.uris.push(uri);
                }
                0x87 => self.ip_addresses.push(match data.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(data).map_err(|_| "IP")?),
                    16 => {
                        IpAddr::from(<[u8; 16]>::try_from(data).map_err(|_| "IP")?).to_canonical()
                    }
                    n => return Err(format!("cannot parse IP address of length {n}").into()),
                }),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every certificate in a PEM file, in file order (leaf first for chains). The PEM must be
    /// plain (see [`crate::crypto::pem::parse_all`]) and hold certificates only: a private key in a
    /// certificate file (mode 0644, copied into kubeconfigs) would be published with it.
    pub fn from_pem_chain(pem_bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        Self::from_pem(pem_bytes, false)
    }

    /// As [`Certificate::from_pem_chain`], for a file that holds its certificate and its key
    /// together (the kubelet's `kubelet-client-current.pem`): one private key block may be
    /// there too.
    pub fn from_pem_with_key(pem_bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        Self::from_pem(pem_bytes, true)
    }

    fn from_pem(pem_bytes: &[u8], key_allowed: bool) -> Result<Vec<Self>, CertError> {
        let blocks = crate::crypto::pem::parse_all(pem_bytes).map_err(|e| match e {
            crate::crypto::pem::PemError::NoBlock => CertError::NoBlock,
            e => CertError::Pem(e),
        })?;
        let is_key = |l: &str| l == "PRIVATE KEY" || l.ends_with(" PRIVATE KEY");
        if let Some((i, b)) = blocks
            .iter()
            .enumerate()
            .find(|(_, b)| b.label != "CERTIFICATE" && !(key_allowed && is_key(&b.label)))
        {
            return Err(CertError::NotACertificate {
                index: i + 1,
                label: b.label.clone(),
                private_key: is_key(&b.label),
            });
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
                        CertError::InChain {
                            index: i + 1,
                            source: Box::new(e),
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(CertError::NoBlock);
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

    /// True when `issuer` issued this certificate: names match and the signature verifies
    /// with an algorithm Go's `CheckSignatureFrom` accepts.
    pub fn is_signed_by(&self, issuer: &Certificate) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        let Some(tbs) = self.der.get(self.tbs.clone()) else {
            return false;
        };
        verify(
            self.signature_algorithm,
            &issuer.public_key,
            tbs,
            &self.signature,
        )
    }
}

fn end(d: Der<'_>, what: &str) -> Result<(), CertError> {
    if d.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected data after the {what}").into())
    }
}

/// Go's parseAI: an OID and at most one parameters element (returned whole).
fn parse_ai(mut d: Der<'_>) -> Option<(&[u8], Option<&[u8]>)> {
    let oid = d.read_oid()?;
    if d.is_empty() {
        return Some((oid, None));
    }
    let (_, params, _) = d.read_any_element()?;
    d.is_empty().then_some((oid, Some(params)))
}

fn hash_of(oid: &[u8]) -> Option<Hash> {
    match oid {
        OID_SHA256 => Some(Hash::Sha256),
        OID_SHA384 => Some(Hash::Sha384),
        OID_SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// Go's getSignatureAlgorithmFromAI, for the algorithms it verifies.
fn signature_algorithm(oid: &[u8], params: Option<&[u8]>) -> SigAlg {
    match oid {
        OID_SHA256_RSA => SigAlg::RsaPkcs1(Hash::Sha256),
        OID_SHA384_RSA => SigAlg::RsaPkcs1(Hash::Sha384),
        OID_SHA512_RSA => SigAlg::RsaPkcs1(Hash::Sha512),
        OID_ECDSA_SHA256 => SigAlg::Ecdsa(Hash::Sha256),
        OID_ECDSA_SHA384 => SigAlg::Ecdsa(Hash::Sha384),
        OID_ECDSA_SHA512 => SigAlg::Ecdsa(Hash::Sha512),
        OID_ED25519 if params.is_none() => SigAlg::Ed25519,
        OID_RSA_PSS => params
            .and_then(pss_hash)
            .map_or(SigAlg::Other, SigAlg::RsaPss),
        _ => SigAlg::Other,
    }
}

/// RSASSA-PSS parameters in the only shape Go accepts: MGF1 with the message hash, a salt as
/// long as the hash, trailer field 1; hash parameters absent or NULL.
fn pss_hash(params: &[u8]) -> Option<Hash> {
    fn hash_ai(mut d: Der<'_>) -> Option<&[u8]> {
        let (oid, p) = parse_ai(d.read(tag::SEQUENCE)?)?;
        (d.is_empty() && (p.is_none() || p == Some(DER_NULL))).then_some(oid)
    }
    let mut outer = Der(params);
    let mut p = outer.read(tag::SEQUENCE)?;
    let hash_oid = hash_ai(p.read(tag::ctx_cons(0))?)?;
    let hash = hash_of(hash_oid)?;
    let mut mgf = p.read(tag::ctx_cons(1))?;
    let mut mgf_ai = mgf.read(tag::SEQUENCE)?;
    if !mgf.is_empty() || mgf_ai.read_oid()? != OID_MGF1 || hash_ai(mgf_ai)? != hash_oid {
        return None;
    }
    let mut salt = p.read(tag::ctx_cons(2))?;
    let want = match hash {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
    };
    if salt.read_i64()? != want || !salt.is_empty() {
        return None;
    }
    if let Some(mut t) = p.read_optional(tag::ctx_cons(3))?
        && (t.read_i64()? != 1 || !t.is_empty())
    {
        return None;
    }
    (p.is_empty() && outer.is_empty()).then_some(hash)
}

fn verify(alg: SigAlg, key: &PublicKey, msg: &[u8], signature: &[u8]) -> bool {
    use Hash::*;
    let (v, key_bytes): (&'static dyn VerificationAlgorithm, &[u8]) = match (alg, key) {
        (SigAlg::RsaPkcs1(h), PublicKey::Rsa { pkcs1, .. }) => (
            match h {
                Sha256 => &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Sha512 => &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            },
            pkcs1,
        ),
        (SigAlg::RsaPss(h), PublicKey::Rsa { pkcs1, .. }) => (
            match h {
                Sha256 => &sig::RSA_PSS_2048_8192_SHA256,
                Sha384 => &sig::RSA_PSS_2048_8192_SHA384,
                Sha512 => &sig::RSA_PSS_2048_8192_SHA512,
            },
            pkcs1,
        ),
        (SigAlg::Ecdsa(h), PublicKey::Ec { curve, point }) => (
            match (curve, h) {
                (Curve::P256, Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
                (Curve::P256, Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
                (Curve::P256, Sha512) => &sig::ECDSA_P256_SHA512_ASN1,
                (Curve::P384, Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
                (Curve::P384, Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
                (Curve::P384, Sha512) => &sig::ECDSA_P384_SHA512_ASN1,
                (Curve::P521, Sha256) => &sig::ECDSA_P521_SHA256_ASN1,
                (Curve::P521, Sha384) => &sig::ECDSA_P521_SHA384_ASN1,
                (Curve::P521, Sha512) => &sig::ECDSA_P521_SHA512_ASN1,
            },
            point,
        ),
        (SigAlg::Ed25519, PublicKey::Ed25519(k)) => (&sig::ED25519, k),
        _ => return false,
    };
    sig::UnparsedPublicKey::new(v, key_bytes)
        .verify(msg, signature)
        .is_ok()
}

/// Whether the JWS signature `signature` over `msg` (the token's `header.payload`), with the
/// JWS algorithm `alg` (RS256/384/512, ES256/384; what kube-apiserver accepts for service-account
/// tokens), verifies with the public key `spki` (DER SubjectPublicKeyInfo, as in `sa.pub`).
pub fn verify_jws(spki: &[u8], alg: &str, msg: &[u8], signature: &[u8]) -> bool {
    use Hash::*;
    let Ok((key, _)) = parse_public_key(spki) else {
        return false;
    };
    match (alg, &key) {
        ("RS256", PublicKey::Rsa { .. }) => verify(SigAlg::RsaPkcs1(Sha256), &key, msg, signature),
        ("RS384", PublicKey::Rsa { .. }) => verify(SigAlg::RsaPkcs1(Sha384), &key, msg, signature),
        ("RS512", PublicKey::Rsa { .. }) => verify(SigAlg::RsaPkcs1(Sha512), &key, msg, signature),
        // JWS ECDSA signatures are r || s, not DER.
        (
            "ES256",
            PublicKey::Ec {
                curve: Curve::P256,
                point,
            },
        ) => sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
            .verify(msg, signature)
            .is_ok(),
        (
            "ES384",
            PublicKey::Ec {
                curve: Curve::P384,
                point,
            },
        ) => sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
            .verify(msg, signature)
            .is_ok(),
        _ => false,
    }
}

/// Subject or issuer as Go's parseName and pkix.Name.FillFromRDNSequence read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Name {
    /// The last CN, as Go keeps it.
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
    pub countries: Vec<String>,
    pub localities: Vec<String>,
    pub provinces: Vec<String>,
    pub street_addresses: Vec<String>,
}

fn parse_name(raw: &[u8]) -> Result<Name, CertError> {
    let mut out = Name::default();
    let mut rdns = Der(raw).read(tag::SEQUENCE).ok_or("invalid RDNSequence")?;
    while !rdns.is_empty() {
        let mut set = rdns.read(tag::SET).ok_or("invalid RDNSequence")?;
        while !set.is_empty() {
            let mut atv = set
                .read(tag::SEQUENCE)
                .ok_or("invalid attribute in RDNSequence")?;
            let oid = atv
                .read_oid()
                .ok_or("invalid attribute type in RDNSequence")?;
            let (t, value) = atv
                .read_any()
                .ok_or("invalid attribute value in RDNSequence")?;
            if !atv.is_empty() {
                return Err(format!("attribute {} has more than a value", oid_string(oid)).into());
            }
            // Go refuses the whole name when any value is not one of its string types.
            let text = asn1_string(t, value.0)
                .map_err(|e| format!("attribute {}: {e}", oid_string(oid)))?;
            let list = match oid {
                OID_CN | OID_O => None,
                OID_OU => Some(&mut out.organizational_units),
                OID_C => Some(&mut out.countries),
                OID_L => Some(&mut out.localities),
                OID_ST => Some(&mut out.provinces),
                OID_STREET => Some(&mut out.street_addresses),
                _ => continue,
            };
            if let Some(list) = list {
                // Descriptive only: a value Rust cannot hold is left out, not refused.
                list.extend(text);
                continue;
            }
            let wanted = if oid == OID_CN { "CN" } else { "O" };
            let text = text.ok_or_else(|| {
                format!("{wanted} is a T61String that is not UTF-8 (Go would read raw bytes)")
            })?;
            if wanted == "CN" {
                out.common_name = Some(text);
            } else {
                out.organizations.push(text);
            }
        }
    }
    Ok(out)
}

/// A big-endian unsigned integer in decimal, as Go's big.Int prints a serial number.
pub fn decimal(magnitude: &[u8]) -> String {
    let mut n: Vec<u8> = magnitude.iter().copied().skip_while(|&b| b == 0).collect();
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        let zeros = n.iter().take_while(|&&b| b == 0).count();
        n.drain(..zeros);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Go's isPrintable (PrintableString plus '*' and '&', which Go lets through).
fn printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(&b)
}

/// Go's parseASN1String. `Ok(None)` for a T61String that is not UTF-8: Go reads its raw
/// bytes, which a Rust string cannot hold.
fn asn1_string(t: u8, v: &[u8]) -> Result<Option<String>, CertError> {
    let utf8 = |v: &[u8]| std::str::from_utf8(v).ok().map(str::to_string);
    match t {
        tag::T61_STRING => Ok(utf8(v)),
        tag::PRINTABLE_STRING if v.iter().all(|&b| printable(b)) => Ok(utf8(v)),
        tag::PRINTABLE_STRING => Err("invalid PrintableString".into()),
        tag::UTF8_STRING => utf8(v)
            .map(Some)
            .ok_or_else(|| "invalid UTF-8 string".into()),
        tag::BMP_STRING if v.len().is_multiple_of(2) => {
            let v = v.strip_suffix(&[0, 0]).unwrap_or(v);
            let units = v.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            Ok(Some(
                char::decode_utf16(units)
                    .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            ))
        }
        tag::BMP_STRING => Err("invalid BMPString".into()),
        tag::IA5_STRING => ia5(v).map(Some).ok_or_else(|| "invalid IA5String".into()),
        tag::NUMERIC_STRING if v.iter().all(|&b| b.is_ascii_digit() || b == b' ') => Ok(utf8(v)),
        tag::NUMERIC_STRING => Err("invalid NumericString".into()),
        t => Err(format!("unsupported string type (tag 0x{t:02x})").into()),
    }
}

/// Go's isIA5String: ASCII only.
fn ia5(v: &[u8]) -> Option<String> {
    v.is_ascii()
        .then(|| String::from_utf8(v.to_vec()).ok())
        .flatten()
}

/// UTCTime or GeneralizedTime in the one form Go's cryptobyte reads back unchanged, with
/// `Z` (Go also takes a +hhmm offset, which RFC 5280 forbids).
fn parse_time(d: &mut Der<'_>) -> Result<OffsetDateTime, CertError> {
    let (digits, year) = if d.peek(tag::UTC_TIME) {
        let v = d.read(tag::UTC_TIME).ok_or("malformed UTCTime")?.0;
        let s = v
            .strip_suffix(b"Z")
            .filter(|s| s.len() == 12)
            .ok_or("UTCTime is not YYMMDDHHMMSSZ")?;
        let yy = num(&s[..2]).ok_or("UTCTime is not YYMMDDHHMMSSZ")?;
        (&s[2..], if yy < 50 { 2000 + yy } else { 1900 + yy })
    } else if d.peek(tag::GENERALIZED_TIME) {
        let v = d
            .read(tag::GENERALIZED_TIME)
            .ok_or("malformed GeneralizedTime")?
            .0;
        let s = v
            .strip_suffix(b"Z")
            .filter(|s| s.len() == 14)
            .ok_or("GeneralizedTime is not YYYYMMDDHHMMSSZ (no fractions)")?;
        (
            &s[4..],
            num(&s[..4]).ok_or("GeneralizedTime is not YYYYMMDDHHMMSSZ")?,
        )
    } else {
        return Err("unsupported time format".into());
    };
    let f = |i: usize| num(&digits[i..i + 2]).ok_or("time has a non-digit");
    let month = u8::try_from(f(0)?)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or("month out of range")?;
    let date = time::Date::from_calendar_date(year as i32, month, f(2)? as u8)
        .map_err(|_| "day out of range")?;
    let t = time::Time::from_hms(f(4)? as u8, f(6)? as u8, f(8)? as u8)
        .map_err(|_| "time of day out of range")?;
    Ok(time::PrimitiveDateTime::new(date, t).assume_utc())
}

fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Go's parseKeyUsageExtension reads the first nine bits.
fn key_usage(bits: &BitString<'_>, critical: bool) -> KeyUsage {
    KeyUsage {
        digital_signature: bits.at(0),
        key_encipherment: bits.at(2),
        key_cert_sign: bits.at(5),
        critical,
        other: [1, 3, 4, 6, 7, 8].iter().any(|&i| bits.at(i)),
    }
}

/// Go's parsePublicKey, for the key types kubepki can check (Go also reads DSA and P-224
/// keys, and accepts keys of unknown algorithms unread; kubepki refuses those).
fn parse_public_key(spki: &[u8]) -> Result<(PublicKey, Option<KeyAlgorithm>), CertError> {
    let mut outer = Der(spki);
    let mut s = outer.read(tag::SEQUENCE).ok_or("malformed")?;
    let ai = s.read(tag::SEQUENCE).ok_or("malformed algorithm")?;
    let (oid, params) = parse_ai(ai).ok_or("malformed algorithm")?;
    let bits = s
        .read_bit_string_bytes()
        .ok_or("malformed subjectPublicKey")?;
    if !s.is_empty() {
        return Err("unexpected data after the key".into());
    }
    match oid {
        OID_RSA => {
            if params != Some(DER_NULL) {
                return Err("RSA key missing NULL parameters".into());
            }
            let mut d = Der(bits);
            let mut seq = d.read(tag::SEQUENCE).ok_or("invalid RSA public key")?;
            let n = seq.read_integer_bytes().ok_or("invalid RSA modulus")?;
            let e = seq.read_i64().ok_or("invalid RSA public exponent")?;
            if !seq.is_empty() || !d.is_empty() {
                return Err("invalid RSA public key".into());
            }
            if n[0] & 0x80 != 0 || n.iter().all(|&b| b == 0) {
                return Err("RSA modulus is not a positive number".into());
            }
            if e <= 0 {
                return Err("RSA public exponent is not a positive number".into());
            }
            let n = &n[usize::from(n[0] == 0)..];
            let size = (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize);
            let alg = match size {
                2048 => Some(KeyAlgorithm::Rsa2048),
                3072 => Some(KeyAlgorithm::Rsa3072),
                4096 => Some(KeyAlgorithm::Rsa4096),
                _ => None,
            };
            Ok((
                PublicKey::Rsa {
                    pkcs1: bits.to_vec(),
                    bits: u32::try_from(size).unwrap_or(u32::MAX),
                },
                alg,
            ))
        }
        OID_EC => {
            let curve_oid = params
                .and_then(|p| {
                    let mut p = Der(p);
                    p.read_oid().filter(|_| p.is_empty())
                })
                .ok_or("invalid ECDSA parameters (only named curves are read)")?;
            let (curve, alg, v): (_, _, &'static dyn VerificationAlgorithm) = match curve_oid {
                OID_P256 => (
                    Curve::P256,
                    Some(KeyAlgorithm::EcdsaP256),
                    &sig::ECDSA_P256_SHA256_ASN1,
                ),
                OID_P384 => (
                    Curve::P384,
                    Some(KeyAlgorithm::EcdsaP384),
                    &sig::ECDSA_P384_SHA384_ASN1,
                ),
                OID_P521 => (Curve::P521, None, &sig::ECDSA_P521_SHA512_ASN1),
                other => {
                    return Err(format!("unsupported elliptic curve {}", oid_string(other)).into());
                }
            };
            let size = match curve {
                Curve::P256 => 32,
                Curve::P384 => 48,
                Curve::P521 => 66,
            };
            // Go's elliptic.Unmarshal: uncompressed points only, on the curve.
            if bits.len() != 1 + 2 * size
                || bits[0] != 4
                || sig::ParsedPublicKey::new(v, bits).is_err()
            {
                return Err("failed to unmarshal elliptic curve point".into());
            }
            Ok((
                PublicKey::Ec {
                    curve,
                    point: bits.to_vec(),
                },
                alg,
            ))
        }
        OID_ED25519 => {
            if params.is_some() {
                return Err("Ed25519 key encoded with illegal parameters".into());
            }
            if bits.len() != 32 {
                return Err("wrong Ed25519 public key size".into());
            }
            Ok((PublicKey::Ed25519(bits.to_vec()), None))
        }
        other => Err(format!(
            "key algorithm {} that kubepki cannot check",
            oid_string(other)
        )
        .into()),
    }
}

/// Go's domainToReverseLabels succeeds: non-empty labels of printable ASCII, no final dot.
fn domain_ok(d: &str) -> bool {
    d.is_empty()
        || d.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| (33..=126).contains(&c)))
}

/// URI SANs kubepki reads as Go does: `scheme://host[:port][/path]` or `scheme:opaque`,
/// lowercase scheme, no userinfo, query, fragment or %-escapes, so that Go's url.Parse
/// accepts them and its URL.String() gives back the same text. Others are refused.
fn check_uri(u: &str) -> Result<(), CertError> {
    let bad = || Err(format!("URI {u:?} is not of the plain form kubepki reads as Go does").into());
    let path_char = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c);
    let Some((scheme, rest)) = u.split_once(':') else {
        return bad();
    };
    let mut sc = scheme.chars();
    if !sc.next().is_some_and(|c| c.is_ascii_lowercase())
        || !sc.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        return bad();
    }
    if let Some(auth_path) = rest.strip_prefix("//") {
        let (auth, path) = auth_path.split_at(auth_path.find('/').unwrap_or(auth_path.len()));
        let (host, port) = auth.split_once(':').unwrap_or((auth, "1"));
        let label_ok =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if host.is_empty()
            || !host.split('.').all(label_ok)
            || port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !path.chars().all(path_char)
            || path.contains("//")
        {
            return bad();
        }
        if !domain_ok(auth) {
            return bad();
        }
    } else if rest.is_empty() || rest.starts_with('/') || !rest.chars().all(path_char) {
        return bad();
    }
    Ok(())
}

/// Go's parseNameConstraintsExtension, which refuses constraints it cannot read. Returns
/// whether Go handles the extension (it does not when a subtree is of another name type).
fn read_name_constraints(mut v: Der<'_>) -> Result<bool, CertError> {
    let invalid = || "invalid name constraints".to_string();
    let mut top = v.read(tag::SEQUENCE).ok_or_else(invalid)?;
    if !v.is_empty() {
        return Err(invalid().into());
    }
    let permitted = top.read_optional(tag::ctx_cons(0)).ok_or_else(invalid)?;
    let excluded = top.read_optional(tag::ctx_cons(1)).ok_or_else(invalid)?;
    if !top.is_empty() {
        return Err(invalid().into());
    }
    let len = |d: &Option<Der<'_>>| d.map_or(0, |d| d.0.len());
    if len(&permitted) == 0 && len(&excluded) == 0 {
        return Err("empty name constraints extension".into());
    }
    let mut handled = true;
    for mut subtrees in [permitted, excluded].into_iter().flatten() {
        while !subtrees.is_empty() {
            let mut seq = subtrees.read(tag::SEQUENCE).ok_or_else(invalid)?;
            let (t, value) = seq.read_any().ok_or_else(invalid)?;
            let value = value.0;
            let text = || ia5(value).ok_or_else(|| "invalid constraint value: not IA5".to_string());
            match t {
                0x82 => {
                    let d = text()?;
                    if !domain_ok(d.strip_prefix('.').unwrap_or(&d)) {
                        return Err(format!("failed to parse dnsName constraint {d:?}").into());
                    }
                }
                0x87 => {
                    let mask = match value.len() {
                        8 => &value[4..],
                        32 => &value[16..],
                        n => {
                            return Err(
                                format!("IP constraint contained value of length {n}").into()
                            );
                        }
                    };
                    if !valid_mask(mask) {
                        return Err("IP constraint contained invalid mask".into());
                    }
                }
                0x81 => {
                    let c = text()?;
                    let ok = if c.contains('@') {
                        rfc2821_mailbox_ok(&c)
                    } else {
                        domain_ok(c.strip_prefix('.').unwrap_or(&c))
                    };
                    if !ok {
                        return Err(format!("failed to parse rfc822Name constraint {c:?}").into());
                    }
                }
                0x86 => {
                    let d = text()?;
                    // Go refuses an IP address here; kubepki also refuses anything with a
                    // colon rather than second-guess net.ParseIP.
                    if d.parse::<IpAddr>().is_ok() || d.contains(':') {
                        return Err(format!("failed to parse URI constraint {d:?}").into());
                    }
                    if !domain_ok(d.strip_prefix('.').unwrap_or(&d)) {
                        return Err(format!("failed to parse URI constraint {d:?}").into());
                    }
                }
                _ => handled = false,
            }
        }
    }
    Ok(handled)
}

/// Go's isValidIPMask: ones, then zeros.
fn valid_mask(mask: &[u8]) -> bool {
    let mut seen_zero = false;
    for &b in mask {
        if seen_zero {
            if b != 0 {
                return false;
            }
            continue;
        }
        match b {
            0x00 | 0x80 | 0xc0 | 0xe0 | 0xf0 | 0xf8 | 0xfc | 0xfe => seen_zero = true,
            0xff => {}
            _ => return false,
        }
    }
    true
}

/// Go's parseRFC2821Mailbox succeeds.
fn rfc2821_mailbox_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut local = Vec::new();
    if b[0] == b'"' {
        b = &b[1..];
        loop {
            let Some((&c, rest)) = b.split_first() else {
                return false;
            };
            b = rest;
            match c {
                b'"' => break,
                b'\\' => match b.split_first() {
                    Some((&n, rest)) if matches!(n, 1..=9 | 11 | 12 | 14..=127) => {
                        local.push(n);
                        b = rest;
                    }
                    _ => return false,
                },
                1..=8 | 11 | 12 | 14..=31 | 32 | 33 | 35..=91 | 93..=126 | 127 => local.push(c),
                _ => return false,
            }
        }
    } else {
        while let Some(&c) = b.first() {
            if c == b'\\' {
                // Go appends whatever character is escaped, whatever its class.
                match b.get(1) {
                    Some(&n) => {
                        local.push(n);
                        b = &b[2..];
                    }
                    None => return false,
                }
            } else if c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&c) {
                local.push(c);
                b = &b[1..];
            } else {
                break;
            }
        }
        if local.is_empty()
            || local[0] == b'.'
            || local[local.len() - 1] == b'.'
            || local.windows(2).any(|w| w == b"..")
        {
            return false;
        }
    }
    match b.split_first() {
        Some((b'@', domain)) => std::str::from_utf8(domain).is_ok_and(domain_ok),
        _ => false,
    }
}

/// Go's CRL distribution points reading: each fullName must be there as [0] if the point
/// has a name, and its URIs are read up to the first other name.
fn read_crl_distribution_points(mut v: Der<'_>) -> Result<(), CertError> {
    let invalid = || "invalid CRL distribution points".to_string();
    let mut list = v.read(tag::SEQUENCE).ok_or_else(invalid)?;
    end(v, "CRL distribution points")?;
    while !list.is_empty() {
        let mut dp = list.read(tag::SEQUENCE).ok_or_else(invalid)?;
        let Some(mut name) = dp.read_optional(tag::ctx_cons(0)).ok_or_else(invalid)? else {
            continue;
        };
        let mut full = name.read(tag::ctx_cons(0)).ok_or_else(invalid)?;
        while full.peek(tag::ctx(6)) {
            full.read(tag::ctx(6)).ok_or_else(invalid)?;
        }
    }
    Ok(())
}

/// Go's Authority Information Access reading.
fn read_aia(mut v: Der<'_>) -> Result<(), CertError> {
    let invalid = || "invalid authority info access".to_string();
    let mut list = v.read(tag::SEQUENCE).ok_or_else(invalid)?;
    end(v, "authority info access")?;
    while !list.is_empty() {
        let mut ad = list.read(tag::SEQUENCE).ok_or_else(invalid)?;
        ad.read_oid().ok_or_else(invalid)?;
        if ad.peek(tag::ctx(6)) {
            ad.read(tag::ctx(6)).ok_or_else(invalid)?;
        }
    }
    Ok(())
}
