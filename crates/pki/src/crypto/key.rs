//! Private keys: generation, kubeadm-format PEM (PKCS#1 for RSA, SEC1 for ECDSA), signing.
//!
//! Keys are held as aws-lc-rs key pairs. Private material never appears in `Debug` output.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    KeyPair as _,
};
use der::Decode;
use serde::{Deserialize, Serialize};

use crate::crypto::asn1::{Der, tag};
use crate::error::{CryptoError, KeyError, ParamError};

/// Key algorithms kubeadm supports (`encryptionAlgorithm` in kubeadm v1beta4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = ParamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParamError::Algorithm {
                given: s.to_string(),
                known: KeyAlgorithm::ALL.map(|a| a.as_str()).to_vec(),
            })
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, Curve),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Curve {
    P256,
    P384,
}

/// A private key of one of the supported algorithms.
pub struct PrivateKey {
    inner: Inner,
    algorithm: KeyAlgorithm,
    /// DER of the public key info, cached: it is compared and embedded often.
    spki: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

// OIDs needed to read PKCS#8 and SEC1.
const OID_RSA: const_oid::ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const OID_EC: const_oid::ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
const OID_P256: const_oid::ObjectIdentifier = const_oid::db::rfc5912::SECP_256_R_1;
const OID_P384: const_oid::ObjectIdentifier = const_oid::db::rfc5912::SECP_384_R_1;

impl PrivateKey {
    /// Generates a fresh key. RSA generation is the slow part of `init`; callers parallelise.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, CryptoError> {
        let inner = match algorithm {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let size = match algorithm {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                Inner::Rsa(RsaKeyPair::generate(size)?)
            }
            KeyAlgorithm::EcdsaP256 => Inner::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)?,
                Curve::P256,
            ),
            KeyAlgorithm::EcdsaP384 => Inner::Ec(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)?,
                Curve::P384,
            ),
        };
        // A generated key has a size kubepki chose, so only the encoder can fail here.
        Self::from_inner(inner).map_err(|e| match e {
            KeyError::Crypto(c) => c,
            other => CryptoError::Generated(Box::new(other)),
        })
    }

    fn from_inner(inner: Inner) -> Result<Self, KeyError> {
        let (algorithm, spki) = match &inner {
            Inner::Rsa(k) => {
                let alg = match k.public_modulus_len() * 8 {
                    2048 => KeyAlgorithm::Rsa2048,
                    3072 => KeyAlgorithm::Rsa3072,
                    4096 => KeyAlgorithm::Rsa4096,
                    bits => return Err(KeyError::RsaSize(bits)),
                };
                (alg, k.public_key().as_der().map(|d| d.as_ref().to_vec()))
            }
            Inner::Ec(k, curve) => {
                let alg = match curve {
                    Curve::P256 => KeyAlgorithm::EcdsaP256,
                    Curve::P384 => KeyAlgorithm::EcdsaP384,
                };
                (alg, k.public_key().as_der().map(|d| d.as_ref().to_vec()))
            }
        };
        let spki = spki.map_err(CryptoError::from)?;
        Ok(PrivateKey {
            inner,
            algorithm,
            spki,
        })
    }

    /// Parses a PEM private key in any of the encodings kubeadm, openssl or cfssl write:
    /// `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8). The
    /// PEM must be plain (see [`crate::crypto::pem::parse_all`]) and hold exactly one private key;
    /// certificate blocks beside it are allowed (the kubelet keeps both in one file).
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self, KeyError> {
        let blocks = crate::crypto::pem::parse_all(pem_bytes)?;
        let mut keys = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if is_private_key_label(&b.label) {
                keys.push(b);
            } else if b.label != "CERTIFICATE" {
                return Err(KeyError::NotAKey {
                    index: i + 1,
                    label: b.label.clone(),
                });
            }
        }
        let block = match keys.as_slice() {
            [] => return Err(KeyError::NoKey),
            [one] => *one,
            more => return Err(KeyError::SeveralKeys(more.len())),
        };
        let der = block.der.as_slice();
        let inner = match block.label.as_str() {
            "RSA PRIVATE KEY" => Self::parse_pkcs1(der)?,
            "EC PRIVATE KEY" => Self::parse_sec1(der, OuterCurve::NoWrapper)?,
            "PRIVATE KEY" => Self::parse_pkcs8(der)?,
            tag => return Err(KeyError::UnsupportedLabel(tag.to_string())),
        };
        Self::from_inner(inner)
    }

    // The three readers below follow Go's x509.ParsePKCS1PrivateKey, ParseECPrivateKey and
    // ParsePKCS8PrivateKey (what kube-apiserver, kube-controller-manager, the kubelet and etcd
    // load keys with), so a key kubepki accepts is one they load as the same key. aws-lc then
    // builds the key pair and adds its own consistency checks.

    /// PKCS#1 RSAPrivateKey, as Go reads it: version 0 (Go's multi-prime version 1 aws-lc
    /// does not read), positive n, d, p, q, and 2 <= e < 2^31 (Go's rsa checkPub).
    fn parse_pkcs1(der: &[u8]) -> Result<Inner, KeyError> {
        let bad = KeyError::Rsa;
        let mut seq = whole_sequence(der).ok_or_else(|| bad("not a DER PKCS#1 RSAPrivateKey"))?;
        match seq.read_i64() {
            Some(0) => {}
            Some(1) => return Err(bad("multi-prime RSA keys are not supported")),
            _ => return Err(bad("unsupported private key version")),
        }
        let n = seq
            .read_integer_bytes()
            .ok_or_else(|| bad("malformed modulus"))?;
        let e = seq
            .read_i64()
            .ok_or_else(|| bad("malformed or too large public exponent"))?;
        let mut positive = vec![n];
        for malformed in [
            "malformed private exponent",
            "malformed prime p",
            "malformed prime q",
        ] {
            positive.push(seq.read_integer_bytes().ok_or_else(|| bad(malformed))?);
        }
        if positive
            .iter()
            .any(|v| v[0] & 0x80 != 0 || v.iter().all(|&b| b == 0))
        {
            return Err(bad("contains zero or negative value"));
        }
        if !(2..=i64::from(i32::MAX)).contains(&e) {
            return Err(bad(
                "public exponent out of the range Go accepts (2 to 2^31-1)",
            ));
        }
        RsaKeyPair::from_der(der)
            .map(Inner::Rsa)
            .map_err(KeyError::RsaRejected)
    }

    /// SEC1 ECPrivateKey as Go's parseECPrivateKey reads it, with what an enclosing PKCS#8
    /// says of the curve (Go prefers a curve named there). Only P-256 and P-384.
    fn parse_sec1(der: &[u8], outer: OuterCurve<'_>) -> Result<Inner, KeyError> {
        let bad = KeyError::Ec;
        let mut seq = whole_sequence(der).ok_or_else(|| bad("not a DER SEC1 ECPrivateKey"))?;
        if seq.read_i64() != Some(1) {
            return Err(bad("unknown EC private key version"));
        }
        let d = seq
            .read(tag::OCTET_STRING)
            .ok_or_else(|| bad("malformed private key"))?
            .0;
        let own_curve = match seq.read_optional(tag::ctx_cons(0)) {
            Some(None) => None,
            Some(Some(mut p)) => Some(p.read_oid().filter(|_| p.is_empty()).ok_or_else(|| {
                bad("the curve is not given by name (explicit curve parameters, which Go does not read)")
            })?),
            None => return Err(bad("malformed curve parameters")),
        };
        // Go ignores the public key, but only a well-formed BIT STRING lets it get that far.
        let well_formed = |mut p: Der<'_>| p.read_bit_string().is_some() && p.is_empty();
        if !seq
            .read_optional(tag::ctx_cons(1))
            .is_some_and(|p| p.is_none_or(well_formed))
        {
            return Err(bad("malformed public key"));
        }
        if !seq.is_empty() {
            return Err(bad("unexpected data after the key"));
        }
        let curve_oid = match (outer, own_curve) {
            (OuterCurve::Named(o), Some(i)) if o != i => {
                return Err(bad("the key names another curve than its PKCS#8 wrapper"));
            }
            (OuterCurve::Named(c), _) | (_, Some(c)) => c,
            (OuterCurve::Unnamed, None) => {
                return Err(bad(
                    "the curve is not given by name (explicit curve parameters, which Go does not read)",
                ));
            }
            (OuterCurve::NoWrapper, None) => {
                return Err(bad(
                    "no named curve (Go's x509 refuses it: \"unknown elliptic curve\")",
                ));
            }
        };
        let (alg, curve, size) = if curve_oid == OID_P256.as_bytes() {
            (&ECDSA_P256_SHA256_ASN1_SIGNING, Curve::P256, 32)
        } else if curve_oid == OID_P384.as_bytes() {
            (&ECDSA_P384_SHA384_ASN1_SIGNING, Curve::P384, 48)
        } else {
            return Err(KeyError::Curve(crate::crypto::asn1::oid_string(curve_oid)));
        };
        // Go drops leading zero bytes beyond the field size and left-pads short values.
        let mut d = d;
        while d.len() > size {
            if d[0] != 0 {
                return Err(bad("invalid private key length"));
            }
            d = &d[1..];
        }
        let mut scalar = vec![0u8; size - d.len()];
        scalar.extend_from_slice(d);
        // aws-lc gets the key as Go reads it (curve, scalar), in canonical SEC1; it refuses
        // a scalar of zero or not below the curve order.
        let sec1 = canonical_sec1(&scalar, curve_oid);
        EcdsaKeyPair::from_private_key_der(alg, &sec1)
            .map(|k| Inner::Ec(k, curve))
            .map_err(|_| bad("invalid private key value"))
    }

    /// PKCS#8 PrivateKeyInfo as Go's ParsePKCS8PrivateKey reads it, for RSA and EC keys.
    fn parse_pkcs8(der: &[u8]) -> Result<Inner, KeyError> {
        let bad = KeyError::Pkcs8;
        let mut seq = whole_sequence(der).ok_or_else(|| bad("not a DER PrivateKeyInfo"))?;
        if seq.read_i64() != Some(0) {
            return Err(bad("unsupported version"));
        }
        let mut ai = seq
            .read(tag::SEQUENCE)
            .ok_or_else(|| bad("malformed algorithm"))?;
        let oid = ai.read_oid().ok_or_else(|| bad("malformed algorithm"))?;
        let params = if ai.is_empty() {
            None
        } else {
            Some(
                ai.read_any_element()
                    .ok_or_else(|| bad("malformed algorithm"))?
                    .1,
            )
        };
        let key = seq
            .read(tag::OCTET_STRING)
            .ok_or_else(|| bad("malformed private key"))?
            .0;
        if !ai.is_empty() || !seq.is_empty() {
            return Err(bad("unexpected data (attributes are not read)"));
        }
        if oid == OID_RSA.as_bytes() {
            // Go reads the embedded PKCS#1 key whatever the algorithm parameters say.
            Self::parse_pkcs1(key)
        } else if oid == OID_EC.as_bytes() {
            // A named curve here wins; other parameters are ignored, as Go ignores them.
            let named = params.and_then(|p| {
                let mut p = Der(p);
                p.read_oid().filter(|_| p.is_empty())
            });
            let outer = match named {
                Some(c) => OuterCurve::Named(c),
                None => OuterCurve::Unnamed,
            };
            Self::parse_sec1(key, outer)
        } else {
            Err(KeyError::Algorithm(crate::crypto::asn1::oid_string(oid)))
        }
    }

    /// A second handle on the same key (through its PEM: the crypto library's keys are not
    /// copyable).
    pub fn try_clone(&self) -> Result<Self, CryptoError> {
        PrivateKey::from_pem(self.to_pem()?.as_bytes())
            .map_err(|e| CryptoError::Generated(Box::new(e)))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// `PUBLIC KEY` PEM, as kubeadm writes `sa.pub`.
    pub fn public_key_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// PEM in kubeadm's encoding: PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` with curve
    /// parameters (Go's x509.ParseECPrivateKey needs them).
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        match &self.inner {
            Inner::Rsa(k) => {
                let pkcs8 = k.as_der()?;
                let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8.as_ref())?;
                Ok(pem_encode("RSA PRIVATE KEY", info.private_key.as_bytes()))
            }
            Inner::Ec(k, _) => {
                let sec1 = k.private_key().as_der()?;
                Ok(pem_encode("EC PRIVATE KEY", sec1.as_ref()))
            }
        }
    }

    /// Signs `msg` with the hash kubeadm (Go's x509) pairs with this key.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)?;
                Ok(sig)
            }
            Inner::Ec(k, _) => Ok(k.sign(&rng, msg)?.as_ref().to_vec()),
        }
    }

    /// The AlgorithmIdentifier of signatures made by [`PrivateKey::sign`], DER-encoded.
    pub fn signature_algorithm(&self) -> spki::AlgorithmIdentifierOwned {
        match self.inner {
            Inner::Rsa(_) => spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(der::asn1::Null.into()),
            },
            Inner::Ec(_, Curve::P256) => spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            Inner::Ec(_, Curve::P384) => spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
                parameters: None,
            },
        }
    }

    /// True when `spki_der` holds this key's public half.
    pub fn matches_public_key(&self, spki_der: &[u8]) -> bool {
        // Compare the key bits, not the whole SPKI: encoders differ on optional parameters.
        match (
            spki::SubjectPublicKeyInfoRef::from_der(&self.spki),
            spki::SubjectPublicKeyInfoRef::from_der(spki_der),
        ) {
            (Ok(a), Ok(b)) => {
                a.algorithm.oid == b.algorithm.oid
                    && a.subject_public_key.raw_bytes() == b.subject_public_key.raw_bytes()
            }
            _ => false,
        }
    }

    /// Encodes the public key info for embedding in a certificate.
    pub fn spki(&self) -> Result<spki::SubjectPublicKeyInfoOwned, CryptoError> {
        Ok(spki::SubjectPublicKeyInfoOwned::from_der(&self.spki)?)
    }
}

/// The contents of `der` when it is one SEQUENCE and nothing after it, as Go's
/// encoding/asn1 demands of a whole key.
fn whole_sequence(der: &[u8]) -> Option<Der<'_>> {
    let mut input = Der(der);
    input.read(tag::SEQUENCE).filter(|_| input.is_empty())
}

/// What is known of an EC key's curve outside its SEC1 structure.
#[derive(Clone, Copy)]
enum OuterCurve<'a> {
    /// A bare SEC1 key.
    NoWrapper,
    /// PKCS#8 whose algorithm parameters name the curve.
    Named(&'a [u8]),
    /// PKCS#8 whose algorithm parameters are absent or spell the curve out.
    Unnamed,
}

/// SEC1 ECPrivateKey DER: version 1, the scalar, the named curve; no public key.
fn canonical_sec1(scalar: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    // Every length here is below 128, so short-form lengths suffice.
    let mut body = vec![0x02, 0x01, 0x01, 0x04, scalar.len() as u8];
    body.extend_from_slice(scalar);
    body.extend([0xa0, curve_oid.len() as u8 + 2, 0x06, curve_oid.len() as u8]);
    body.extend_from_slice(curve_oid);
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Go's rule (crypto/tls): a private key block is `PRIVATE KEY` or ends in ` PRIVATE KEY`.
fn is_private_key_label(label: &str) -> bool {
    label == "PRIVATE KEY" || label.ends_with(" PRIVATE KEY")
}

pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    crate::crypto::pem::encode(tag, der)
}

/// Public key (for `sa.pub`) from PEM: the first of [`public_keys_from_pem`], the one that
/// belongs to `sa.key`.
pub fn public_key_from_pem(pem_bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ok(public_keys_from_pem(pem_bytes)?.swap_remove(0))
}

/// Every public key of `sa.pub` (DER SubjectPublicKeyInfo), in order: one or more `PUBLIC KEY`
/// blocks. The API server verifies tokens against each (a rotation of the service-account key
/// puts the new key beside the old one); the first is `sa.key`'s.
pub fn public_keys_from_pem(pem_bytes: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
    let mut keys = Vec::new();
    for (i, b) in crate::crypto::pem::parse_all(pem_bytes)?
        .into_iter()
        .enumerate()
    {
        if b.label != "PUBLIC KEY" {
            return Err(crate::error::PemError::UnexpectedLabel {
                index: i + 1,
                found: b.label,
                expected: "PUBLIC KEY".into(),
            }
            .into());
        }
        spki::SubjectPublicKeyInfoRef::from_der(&b.der).map_err(KeyError::PublicKey)?;
        keys.push(b.der);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn ec_round_trip_keeps_curve_parameters() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let k = PrivateKey::generate(alg).unwrap();
            let pem = k.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
            let back = PrivateKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.public_key_der(), k.public_key_der());
            // SEC1 with [0] parameters: the DER contains the curve OID.
            let der = crate::crypto::pem::parse_one(pem.as_bytes(), "EC PRIVATE KEY").unwrap();
            let oid = match alg {
                KeyAlgorithm::EcdsaP256 => const_oid::db::rfc5912::SECP_256_R_1,
                _ => const_oid::db::rfc5912::SECP_384_R_1,
            };
            let oid_der = oid.to_der().unwrap();
            assert!(der.windows(oid_der.len()).any(|w| w == oid_der));
        }
    }

    #[test]
    fn rsa_is_written_as_pkcs1_and_reads_back() {
        let k = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let pem = k.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let back = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(back.algorithm(), KeyAlgorithm::Rsa2048);
        assert!(back.matches_public_key(k.public_key_der()));
    }

    #[test]
    fn rejects_garbage_and_unknown_names() {
        assert!(PrivateKey::from_pem(b"not pem").is_err());
        assert!(
            PrivateKey::from_pem(
                b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            )
            .is_err()
        );
        assert!("RSA-1024".parse::<KeyAlgorithm>().is_err());
        assert_eq!(
            "ecdsa-p256".parse::<KeyAlgorithm>().ok(),
            Some(KeyAlgorithm::EcdsaP256)
        );
    }
}
