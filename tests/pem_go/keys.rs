//! Private key parity with Go (`x509.ParsePKCS1PrivateKey`, `ParseECPrivateKey`,
//! `ParsePKCS8PrivateKey`, chosen by PEM label as Kubernetes' keyutil does): generated SEC1,
//! PKCS#8 and PKCS#1 keys with named, missing, explicit and mismatched curve parameters,
//! padded, short, zero and out-of-range scalars, right, wrong and malformed embedded public
//! keys, other versions and algorithms, exponents Go refuses, trailing and extra data. Whenever
//! kubepki loads a key, Go loads it too, as the same key (type, curve, public key).

use super::cert_parity::{oid_tlv, tlv};
use super::*;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};

/// The elements of a DER SEQUENCE, each whole (the generator's own inputs only).
fn elements(der: &[u8]) -> Vec<Vec<u8>> {
    fn one(b: &[u8]) -> (usize, usize) {
        let (hdr, len) = if b[1] & 0x80 == 0 {
            (2, usize::from(b[1]))
        } else {
            let n = usize::from(b[1] & 0x7f);
            (
                2 + n,
                b[2..2 + n].iter().fold(0, |a, &x| a * 256 + usize::from(x)),
            )
        };
        (hdr, hdr + len)
    }
    let (hdr, end) = one(der);
    let mut body = &der[hdr..end];
    let mut out = Vec::new();
    while !body.is_empty() {
        let (_, e) = one(body);
        out.push(body[..e].to_vec());
        body = &body[e..];
    }
    out
}

/// An element's contents.
fn contents(el: &[u8]) -> Vec<u8> {
    let hdr = if el[1] & 0x80 == 0 {
        2
    } else {
        2 + usize::from(el[1] & 0x7f)
    };
    el[hdr..].to_vec()
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

struct Material {
    /// (curve OID, scalar, public point) of a P-256 and a P-384 key.
    ec: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    /// PKCS#1 DER of RSA keys: e = 65537 (kubepki's), e = 3, e = 2^32 + 1.
    rsa: Vec<(&'static str, Vec<u8>)>,
    /// ECParameters of P-256 spelled out (openssl -param_enc explicit).
    explicit_p256: Vec<u8>,
}

fn openssl_der(args: &[&str]) -> Vec<u8> {
    ensure_openssl();
    run_ok(Command::new("openssl").args(args)).stdout
}

fn material() -> Material {
    let mut ec = Vec::new();
    for (alg, curve) in [
        (KeyAlgorithm::EcdsaP256, P256),
        (KeyAlgorithm::EcdsaP384, P384),
    ] {
        let k = PrivateKey::generate(alg).unwrap();
        let der = pem::parse_one(k.to_pem().unwrap().as_bytes(), "EC PRIVATE KEY").unwrap();
        let els = elements(&der);
        let point = contents(&contents(&els[3]))[1..].to_vec();
        ec.push((curve, contents(&els[1]), point));
    }
    let k = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let mut rsa = vec![(
        "RSA e=65537",
        pem::parse_one(k.to_pem().unwrap().as_bytes(), "RSA PRIVATE KEY").unwrap(),
    )];
    for (what, e) in [("RSA e=3", "3"), ("RSA e=2^32+1", "4294967297")] {
        let der = openssl_der(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            &format!("rsa_keygen_pubexp:{e}"),
            "-outform",
            "DER",
        ]);
        // openssl 3 writes PKCS#1 here; older ones PKCS#8.
        let els = elements(&der);
        rsa.push((
            what,
            if els[1][0] == 0x30 {
                contents(&els[2])
            } else {
                der
            },
        ));
    }
    let explicit_p256 = openssl_der(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-param_enc",
        "explicit",
        "-outform",
        "DER",
    ]);
    Material {
        ec,
        rsa,
        explicit_p256,
    }
}

struct Gen<'a> {
    r: &'a mut Rng,
    m: &'a Material,
    knobs: Vec<&'static str>,
}

impl Gen<'_> {
    fn pick(&mut self, n: usize, knob: &'static str) -> bool {
        let hit = self.r.below(n) == 0;
        if hit {
            self.knobs.push(knob);
        }
        hit
    }

    /// SEC1 ECPrivateKey with varied fields; `with_curve` says whether [0] is there by default.
    fn sec1(&mut self, with_curve: bool) -> Vec<u8> {
        let (curve, d, point) = self.m.ec[self.r.below(2)].clone();
        let mut parts = Vec::new();
        parts.push(if self.pick(25, "SEC1: version 0") {
            tlv(0x02, &[0])
        } else if self.pick(25, "SEC1: version 2") {
            tlv(0x02, &[2])
        } else {
            tlv(0x02, &[1])
        });
        let scalar = if self.pick(12, "scalar padded with a zero byte") {
            [vec![0], d].concat()
        } else if self.pick(12, "scalar short (d = 1)") {
            vec![1]
        } else if self.pick(25, "scalar zero") {
            vec![0]
        } else if self.pick(25, "scalar = P-256 order") {
            (0..32)
                .map(|i| u8::from_str_radix(&P256_ORDER[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        } else if self.pick(25, "scalar padded with a nonzero byte") {
            [vec![1], d].concat()
        } else {
            d
        };
        parts.push(tlv(0x04, &scalar));
        let named = with_curve && !self.pick(10, "SEC1 without curve");
        if self.pick(8, "SEC1 explicit curve parameters") {
            parts.push(tlv(0xa0, &self.m.explicit_p256));
        } else if self.pick(20, "SEC1 names the other curve") {
            parts.push(tlv(0xa0, &oid_tlv(if curve == P256 { P384 } else { P256 })));
        } else if self.pick(40, "SEC1 curve P-521") {
            parts.push(tlv(0xa0, &oid_tlv("1.3.132.0.35")));
        } else if self.pick(40, "SEC1 curve secp256k1") {
            parts.push(tlv(0xa0, &oid_tlv("1.3.132.0.10")));
        } else if self.pick(40, "SEC1 primitive [0]") {
            parts.push(tlv(0x80, &oid_tlv(curve)));
        } else if named {
            parts.push(tlv(0xa0, &oid_tlv(curve)));
        }
        if self.pick(10, "public key absent") {
        } else if self.pick(15, "public key wrong") {
            let mut p = point.clone();
            let n = p.len();
            p[n - 1] ^= 1;
            parts.push(tlv(0xa1, &tlv(0x03, &[vec![0], p].concat())));
        } else if self.pick(30, "public key BIT STRING malformed") {
            parts.push(tlv(
                0xa1,
                &tlv(0x03, &[vec![1], point.clone(), vec![1]].concat()),
            ));
        } else {
            parts.push(tlv(0xa1, &tlv(0x03, &[vec![0], point].concat())));
        }
        if self.pick(40, "SEC1 extra element") {
            parts.push(tlv(0x05, &[]));
        }
        seq(&parts)
    }

    fn pkcs1(&mut self) -> Vec<u8> {
        let (what, der) = self.m.rsa[self.r.below(3)].clone();
        self.knobs.push(what);
        let mut els = elements(&der);
        if self.pick(20, "PKCS#1 version 1") {
            els[0] = tlv(0x02, &[1]);
        }
        if self.pick(20, "PKCS#1 without CRT values") {
            els.truncate(6);
        }
        if self.pick(20, "PKCS#1 private exponent changed") {
            let n = els[3].len();
            els[3][n - 1] ^= 2;
        }
        if self.pick(30, "PKCS#1 negative modulus") {
            let c = contents(&els[1]);
            els[1] = tlv(0x02, &c[1..]);
        }
        if self.pick(30, "PKCS#1 extra element") {
            els.push(tlv(0x05, &[]));
        }
        seq(&els)
    }

    fn pkcs8(&mut self) -> Vec<u8> {
        let version = if self.pick(20, "PKCS#8 version 1") {
            1
        } else {
            0
        };
        let (ai, key) = if self.r.chance(35) {
            self.knobs.push("PKCS#8 RSA");
            let params = if self.pick(5, "PKCS#8 RSA without NULL") {
                vec![]
            } else {
                tlv(0x05, &[])
            };
            (
                seq(&[oid_tlv("1.2.840.113549.1.1.1"), params]),
                self.pkcs1(),
            )
        } else if self.pick(25, "PKCS#8 Ed25519") {
            (seq(&[oid_tlv("1.3.101.112")]), tlv(0x04, &[9; 32]))
        } else {
            self.knobs.push("PKCS#8 EC");
            let inner_named = self.r.chance(30);
            if inner_named {
                self.knobs.push("PKCS#8 EC, curve inside too");
            }
            let inner = self.sec1(inner_named);
            let curve = match elements(&inner).get(2) {
                Some(e) if e[0] == 0xa0 && e[2] == 0x06 => contents(e),
                _ => oid_tlv(if inner.len() > 130 { P384 } else { P256 }),
            };
            let params = if self.pick(8, "PKCS#8 EC without parameters") {
                vec![]
            } else if self.pick(8, "PKCS#8 EC explicit parameters") {
                self.m.explicit_p256.clone()
            } else if self.pick(15, "PKCS#8 EC names the other curve") {
                oid_tlv(P384)
            } else {
                curve
            };
            (seq(&[oid_tlv("1.2.840.10045.2.1"), params]), inner)
        };
        let mut parts = vec![tlv(0x02, &[version]), ai, tlv(0x04, &key)];
        if self.pick(25, "PKCS#8 attributes") {
            parts.push(tlv(0xa0, &[]));
        }
        seq(&parts)
    }

    /// (label byte, DER): 0 RSA PRIVATE KEY, 1 EC PRIVATE KEY, 2 PRIVATE KEY.
    fn key(&mut self) -> (u8, Vec<u8>) {
        let (mut label, mut der) = match self.r.below(10) {
            0..=3 => (1, self.sec1(true)),
            4..=5 => (0, self.pkcs1()),
            _ => (2, self.pkcs8()),
        };
        if self.pick(30, "label of another format") {
            label = (label + 1) % 3;
        }
        if self.pick(30, "trailing data") {
            der.push(0);
        }
        if self.pick(30, "non-minimal outer length") {
            let els = elements(&der).concat();
            let n = els.len();
            der = [vec![0x30, 0x84], (n as u32).to_be_bytes().to_vec(), els].concat();
        }
        (label, der)
    }
}

/// What Go prints for a key kubepki loaded.
fn ours(k: &PrivateKey) -> String {
    let info = x509_cert::spki::SubjectPublicKeyInfoRef::try_from(k.public_key_der()).unwrap();
    let bits = info.subject_public_key.raw_bytes();
    match k.algorithm() {
        KeyAlgorithm::EcdsaP256 => format!("OK|EC|P-256|{}", hex(bits)),
        KeyAlgorithm::EcdsaP384 => format!("OK|EC|P-384|{}", hex(bits)),
        _ => {
            let els = elements(bits);
            let n = contents(&els[0]);
            let e = contents(&els[1])
                .iter()
                .fold(0u64, |a, &x| a * 256 + u64::from(x));
            format!("OK|RSA|{}|{e}", hex(&n[usize::from(n[0] == 0)..]))
        }
    }
}

/// Whatever private key kubepki loads, Go loads as the same key.
#[test]
fn private_keys_agree_with_go() {
    let m = material();
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    let mut g = Gen {
        r: &mut r,
        m: &m,
        knobs: Vec::new(),
    };
    let generated: Vec<(u8, Vec<u8>, Vec<&'static str>)> = (0..3000)
        .map(|_| {
            let (label, der) = g.key();
            (label, der, std::mem::take(&mut g.knobs))
        })
        .collect();
    let inputs: Vec<Vec<u8>> = generated
        .iter()
        .map(|(l, der, _)| [vec![*l], der.clone()].concat())
        .collect();
    let go = run_go("key", &inputs);
    let labels = ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"];
    let mut tally = Tally::default();
    for (i, ((label, der, knobs), go_line)) in generated.iter().zip(&go).enumerate() {
        let pem = pem::encode(labels[usize::from(*label)], der);
        let col = match PrivateKey::from_pem(pem.as_bytes()) {
            Ok(k) => {
                assert_eq!(
                    ours(&k),
                    *go_line,
                    "key #{i} ({knobs:?}) loads differently in Go: {}",
                    hex(der)
                );
                1
            }
            Err(_) if go_line.starts_with("OK") => 2,
            Err(_) => 3,
        };
        tally.record(knobs, col);
    }
    let (both, _, neither) = tally.report("keys");
    assert!(both > 500 && neither > 300);
    tally.check(5, &["SEC1 explicit curve parameters", "RSA e=2^32+1"]);
}
