//! kubepki's PEM decoder against Go's own: tens of thousands of generated inputs (valid
//! blocks, text before, between and after them, several blocks, CRLF, headers, broken END
//! lines, spaces and tabs in the base64, random damage) are decoded by Go's `encoding/pem`
//! (the Go that builds kube-apiserver here, Debian's golang-go) and by
//! `kubepki_pki::crypto::pem::decode`; every block, its type, headers, contents and where Go's rest
//! begins must agree. And whenever kubepki's strict reader accepts a single request block, Go's
//! first block (the one the API server and the signer use) is that very block.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use kubepki_pki::crypto::pem;

/// xorshift64*: a deterministic stream, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const LABELS: &[&str] = &[
    "CERTIFICATE REQUEST",
    "CERTIFICATE",
    "X",
    "",
    "A B",
    "CERTIFICATE REQUEST ",
    "EC PRIVATE KEY",
];
const JUNK: &[&str] = &[
    "",
    " ",
    "\n",
    "\r\n",
    "\t",
    "junk",
    "junk\n",
    " \n",
    "-----",
    "\n\n",
    "x\r\n",
    "-----BEGIN ",
    "-----END X-----\n",
];
const HEADERS: &[&str] = &[
    "Proc-Type: 4,ENCRYPTED\n",
    "K:V\n",
    ":\n",
    "a : b\r\n",
    "DEK-Info: AES-128-CBC,00\n\n",
];
const DAMAGE: &[u8] = b"-BEGINEND :\r\n\t=A+/X";

fn block(r: &mut Rng) -> String {
    let label = r.pick(LABELS);
    let body: Vec<u8> = (0..r.below(49)).map(|_| r.next() as u8).collect();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&body)
    };
    let nl = if r.chance(20) { "\r\n" } else { "\n" };
    let width = 4 + r.below(73);
    let mut s = format!(
        "-----BEGIN {label}-----{}{nl}",
        if r.chance(10) { " \t" } else { "" }
    );
    if r.chance(15) {
        for _ in 0..1 + r.below(2) {
            s.push_str(r.pick(HEADERS));
        }
    }
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % width == 0 {
            s.push_str(nl);
        }
        if r.chance(2) {
            s.push(r.pick(&[' ', '\t']));
        }
        s.push(c);
    }
    if !b64.is_empty() || r.chance(50) {
        s.push_str(nl);
    }
    let end_label = if r.chance(8) { r.pick(LABELS) } else { label };
    let dashes = if r.chance(5) { "----" } else { "-----" };
    s.push_str(&format!("-----END {end_label}{dashes}"));
    if r.chance(10) {
        s.push_str(r.pick(&[" ", "\t", " junk", "x"]));
    }
    if !r.chance(10) {
        s.push_str(nl);
    }
    s
}

fn input(r: &mut Rng) -> Vec<u8> {
    // One in eight: one request block with whitespace around, as a kubelet sends it.
    if r.chance(12) {
        let mut b = block(r);
        while !b.starts_with("-----BEGIN CERTIFICATE REQUEST-----") {
            b = block(r);
        }
        let ws = ["", "\n", " \n", "\r\n", "\t\n\n"];
        return format!("{}{b}{}", r.pick(&ws), r.pick(&ws)).into_bytes();
    }
    let mut s = String::new();
    s.push_str(r.pick(JUNK));
    for _ in 0..r.below(4) {
        s.push_str(&block(r));
        if r.chance(40) {
            s.push_str(r.pick(JUNK));
        }
    }
    let mut b = s.into_bytes();
    if r.chance(25) {
        for _ in 0..1 + r.below(3) {
            if b.is_empty() {
                break;
            }
            let i = r.below(b.len());
            match r.below(3) {
                0 => b[i] = r.pick(DAMAGE),
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, r.pick(DAMAGE)),
            }
        }
    }
    if r.chance(5) && !b.is_empty() {
        let n = r.below(b.len());
        b.truncate(n);
    }
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn hexes<S: AsRef<[u8]>>(xs: &[S]) -> String {
    xs.iter()
        .map(|x| hex(x.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

fn ip16(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => hex(&v4.to_ipv6_mapped().octets()),
        std::net::IpAddr::V6(v6) => hex(&v6.octets()),
    }
}

/// What Go's loop prints for `data`, computed with kubepki's decoder.
fn ours(data: &[u8]) -> String {
    let mut line = String::new();
    let mut pos = 0;
    while let Some(b) = pem::decode(data, pos) {
        let _ = write!(
            line,
            "{}:{}:{}:{};",
            hex(b.label.as_bytes()),
            usize::from(b.has_headers),
            hex(&b.der),
            b.end
        );
        pos = b.end;
    }
    line
}

/// The Go program, built once per test binary into cargo's scratch directory for tests.
fn go_decoder() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_go_decoder).clone()
}

fn build_go_decoder() -> PathBuf {
    ensure_installed("go", &["golang-go"]);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pemdecode");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/go/pemdecode.go");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    run_ok(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .env("GOFLAGS", ""),
    );
    out
}

/// Runs the Go program in `mode` on `inputs` (length-prefixed in a scratch file), one output
/// line per input.
fn run_go(mode: &str, inputs: &[Vec<u8>]) -> Vec<String> {
    let bin = go_decoder();
    let file = std::env::temp_dir().join(format!("kubepki-{mode}-inputs-{}", std::process::id()));
    let mut framed = Vec::new();
    for i in inputs {
        framed.extend((i.len() as u32).to_le_bytes());
        framed.extend(i);
    }
    std::fs::write(&file, &framed).unwrap();
    let mut cmd = Command::new(&bin);
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    let out = run_ok(cmd.arg(&file));
    let _ = std::fs::remove_file(&file);
    let lines: Vec<String> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), inputs.len());
    lines
}

/// Outcomes per generator knob: (inputs, read alike, refused by kubepki only, refused by both).
#[derive(Default)]
struct Tally(std::collections::BTreeMap<&'static str, [usize; 4]>);

impl Tally {
    /// Records one input; `col` is 1 (read alike), 2 (kubepki only refuses), 3 (both refuse).
    fn record(&mut self, knobs: &[&'static str], col: usize) {
        for k in knobs.iter().chain(std::iter::once(&"(all)")) {
            let e = self.0.entry(k).or_default();
            e[0] += 1;
            e[col] += 1;
        }
    }

    /// Prints the table; returns the totals (read alike, kubepki only refuses, both refuse).
    fn report(&self, what: &str) -> (usize, usize, usize) {
        eprintln!("knob: inputs / read alike / refused by kubepki only / refused by both");
        for (k, [n, a, o, x]) in &self.0 {
            eprintln!("  {k}: {n} / {a} / {o} / {x}");
        }
        let [n, both, only, neither] = self.0["(all)"];
        eprintln!(
            "{n} {what}: {both} read alike by kubepki and Go, {only} refused by kubepki only, {neither} refused by both"
        );
        (both, only, neither)
    }

    /// Every knob reached at least `min` times; the listed ones never read by kubepki.
    fn check(&self, min: usize, refused: &[&str]) {
        for (k, [n, ..]) in &self.0 {
            assert!(*n >= min, "the generator reaches {k:?} only {n} times");
        }
        for k in refused {
            let [n, alike, ..] = self.0[k];
            assert!(n > 0 && alike == 0, "{k}: {alike} of {n} accepted");
        }
    }
}

#[path = "pem_go/certs.rs"]
mod cert_parity;
#[path = "pem_go/keys.rs"]
mod key_parity;

#[test]
fn decode_agrees_with_go_on_generated_inputs() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let inputs: Vec<Vec<u8>> = (0..30_000).map(|_| input(&mut r)).collect();
    let go = run_go("", &inputs);
    let (mut with_blocks, mut strict_ok, mut skipped_by_go) = (0, 0, 0);
    for (i, (data, go_line)) in inputs.iter().zip(&go).enumerate() {
        let mine = ours(data);
        assert_eq!(
            mine,
            *go_line,
            "input #{i} decodes differently from Go: {:?}",
            String::from_utf8_lossy(data)
        );
        if !go_line.is_empty() {
            with_blocks += 1;
        }
        // Text Go skips in front of a block it then reads: kubepki refuses such input.
        if let Some(first) = pem::decode(data, 0)
            && data[..first.start].iter().any(|b| !b.is_ascii_whitespace())
        {
            skipped_by_go += 1;
            assert!(pem::parse_all(data).is_err(), "input #{i} accepted");
        }
        // Whenever the strict reader accepts one request, it is Go's first block, whole.
        if let Ok(der) = pem::parse_one(data, "CERTIFICATE REQUEST") {
            strict_ok += 1;
            let first = go_line.split(';').next().unwrap();
            let mut f = first.split(':');
            assert_eq!(f.next(), Some(hex(b"CERTIFICATE REQUEST").as_str()), "#{i}");
            assert_eq!(f.next(), Some("0"), "#{i}: no headers");
            assert_eq!(f.next(), Some(hex(&der).as_str()), "#{i}");
            assert_eq!(go_line.matches(';').count(), 1, "#{i}: Go sees one block");
        }
    }
    eprintln!(
        "{} inputs: {with_blocks} with blocks Go reads, {skipped_by_go} where Go skips text before a block, {strict_ok} single requests accepted by the strict reader",
        inputs.len()
    );
    // The generator must reach every interesting region.
    assert!(with_blocks > 10_000 && strict_ok > 300 && skipped_by_go > 300);
}

mod csr_parity {
    use super::*;
    use const_oid::ObjectIdentifier;
    use const_oid::db::{rfc4519, rfc5912};
    use der::asn1::{Any, BitString, Ia5String, OctetString, SetOfVec};
    use der::{Decode, Encode, Tag};
    use kubepki_pki::crypto::csr;
    use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};
    use x509_cert::attr::{Attribute, AttributeTypeAndValue};
    use x509_cert::ext::Extension;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
    use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

    const TEXTS: &[&str] = &["system:node:n1", "system:nodes", "n2", "a*b&c", "x y", "é"];

    fn text(r: &mut Rng) -> Any {
        let s = r.pick(TEXTS);
        match r.below(8) {
            0 => Any::new(Tag::PrintableString, s.as_bytes()).unwrap(),
            1 => Any::new(Tag::Ia5String, s.as_bytes()).unwrap(),
            2 => Any::new(
                Tag::BmpString,
                s.encode_utf16()
                    .flat_map(|c| c.to_be_bytes())
                    .collect::<Vec<u8>>(),
            )
            .unwrap(),
            3 => Any::new(Tag::TeletexString, s.as_bytes()).unwrap(),
            4 => Any::new(Tag::OctetString, s.as_bytes()).unwrap(),
            _ => Any::new(Tag::Utf8String, s.as_bytes()).unwrap(),
        }
    }

    fn subject(r: &mut Rng) -> Name {
        let mut seq = RdnSequence::default();
        // Mostly what a kubelet sends: O, then CN.
        if r.chance(50) {
            for (oid, v) in [
                (rfc4519::O, "system:nodes"),
                (rfc4519::CN, "system:node:n1"),
            ] {
                let atv = AttributeTypeAndValue {
                    oid,
                    value: Any::new(Tag::PrintableString, v.as_bytes()).unwrap(),
                };
                seq.push(RelativeDistinguishedName::try_from(vec![atv]).unwrap());
            }
            return Name::from_der(&seq.to_der().unwrap()).unwrap();
        }
        for _ in 0..r.below(4) {
            let most = if r.chance(20) { 3 } else { 1 };
            let atvs: Vec<AttributeTypeAndValue> = (0..1 + r.below(most))
                .map(|_| AttributeTypeAndValue {
                    oid: r.pick(&[rfc4519::CN, rfc4519::O, rfc4519::O, rfc4519::OU]),
                    value: text(r),
                })
                .collect();
            if let Ok(rdn) = RelativeDistinguishedName::try_from(atvs) {
                seq.push(rdn);
            }
        }
        Name::from_der(&seq.to_der().unwrap()).unwrap()
    }

    fn general_name(r: &mut Rng) -> GeneralName {
        match r.below(7) {
            0 | 1 => GeneralName::DnsName(
                Ia5String::new(r.pick(&["n1", "n2", "kubernetes.default.svc"])).unwrap(),
            ),
            2 => GeneralName::IpAddress(
                OctetString::new(r.pick(&[
                    &[10u8, 0, 0, 5][..],
                    &[0; 16][..],
                    &[1, 2, 3, 4, 5][..],
                ]))
                .unwrap(),
            ),
            3 => GeneralName::Rfc822Name(Ia5String::new("a@b.example").unwrap()),
            4 => GeneralName::UniformResourceIdentifier(
                Ia5String::new("spiffe://example/n1").unwrap(),
            ),
            5 => GeneralName::RegisteredId(rfc4519::CN),
            _ => GeneralName::IpAddress(OctetString::new([10u8, 0, 0, 6]).unwrap()),
        }
    }

    fn san(r: &mut Rng) -> Extension {
        let names: Vec<GeneralName> = (0..r.below(4)).map(|_| general_name(r)).collect();
        Extension {
            extn_id: <SubjectAltName as const_oid::AssociatedOid>::OID,
            critical: r.chance(10),
            extn_value: OctetString::new(SubjectAltName(names).to_der().unwrap()).unwrap(),
        }
    }

    fn ext_request(r: &mut Rng) -> Attribute {
        let mut exts = vec![san(r)];
        if r.chance(15) {
            exts.push(san(r));
        }
        if r.chance(15) {
            exts.push(Extension {
                extn_id: rfc5912::ID_CE_BASIC_CONSTRAINTS,
                critical: true,
                extn_value: OctetString::new([0x30, 0x03, 0x01, 0x01, 0xff]).unwrap(),
            });
        }
        let mut a: Attribute = ExtensionReq(exts).try_into().unwrap();
        if r.chance(10) {
            let other: Attribute = ExtensionReq(vec![san(r)]).try_into().unwrap();
            for v in other.values.iter() {
                let _ = a.values.insert(v.clone());
            }
        }
        a
    }

    fn attributes(r: &mut Rng) -> SetOfVec<Attribute> {
        let mut set = SetOfVec::new();
        if r.chance(85) {
            let _ = set.insert(ext_request(r));
        }
        if r.chance(10) {
            let _ = set.insert(ext_request(r));
        }
        if r.chance(10) {
            let challenge = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");
            let mut values = SetOfVec::new();
            values
                .insert(Any::new(Tag::Utf8String, b"secret".as_slice()).unwrap())
                .unwrap();
            let _ = set.insert(Attribute {
                oid: challenge,
                values,
            });
        }
        set
    }

    fn request(r: &mut Rng, key: &PrivateKey) -> Vec<u8> {
        let info = CertReqInfo {
            version: Version::V1,
            subject: subject(r),
            public_key: key.spki().unwrap(),
            attributes: attributes(r),
        };
        let mut sig = key.sign(&info.to_der().unwrap()).unwrap();
        if r.chance(5) {
            sig[5] ^= 1;
        }
        CertReq {
            info,
            algorithm: key.signature_algorithm(),
            signature: BitString::from_bytes(&sig).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    /// Whatever request kubepki reads, Go's x509 (the API server's and the signer's parser)
    /// reads the same subject and names from it, and accepts its signature.
    #[test]
    fn csr_fields_agree_with_go() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut r = Rng(0xD1B5_4A32_D192_ED03);
        let inputs: Vec<Vec<u8>> = (0..4000).map(|_| request(&mut r, &key)).collect();
        let go = run_go("csr", &inputs);
        let (mut both, mut only_go, mut neither) = (0, 0, 0);
        for (i, (der, go_line)) in inputs.iter().zip(&go).enumerate() {
            match csr::parse_der(der) {
                Ok(info) => {
                    both += 1;
                    let mine = format!(
                        "OK|{}|{}|{}|{}|{}|{}|sig-ok",
                        hex(info.common_name.as_bytes()),
                        hexes(&info.organizations),
                        hexes(&info.dns_names),
                        info.ip_addresses
                            .iter()
                            .map(ip16)
                            .collect::<Vec<_>>()
                            .join(","),
                        hexes(&info.emails),
                        hexes(&info.uris),
                    );
                    assert_eq!(mine, *go_line, "request #{i} reads differently in Go");
                }
                Err(_) if go_line.starts_with("OK") && !go_line.ends_with("sig-bad") => {
                    only_go += 1
                }
                Err(_) => neither += 1,
            }
        }
        eprintln!(
            "{} requests: {both} read alike by kubepki and Go, {only_go} refused by kubepki only (ambiguous or unusual), {neither} refused by both",
            inputs.len()
        );
        assert!(both > 500 && only_go > 200 && neither > 100);
    }
}
