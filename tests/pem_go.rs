//! kubepki's PEM decoder against Go's own: tens of thousands of generated inputs (valid
//! blocks, text before, between and after them, several blocks, CRLF, headers, broken END
//! lines, spaces and tabs in the base64, random damage) are decoded by Go's `encoding/pem`
//! (the Go that builds kube-apiserver here, Debian's golang-go) and by
//! `kubepki_pki::pem::decode`; every block, its type, headers, contents and where Go's rest
//! begins must agree. And whenever kubepki's strict reader accepts a single request block, Go's
//! first block (the one the API server and the signer use) is that very block.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use kubepki_pki::pem;

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

fn go_decoder() -> PathBuf {
    ensure_installed("go", &["golang-go"]);
    let out = std::env::temp_dir().join(format!("kubepki-pemdecode-{}", std::process::id()));
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

#[test]
fn decode_agrees_with_go_on_generated_inputs() {
    let bin = go_decoder();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let inputs: Vec<Vec<u8>> = (0..30_000).map(|_| input(&mut r)).collect();
    let file = std::env::temp_dir().join(format!("kubepki-pem-inputs-{}", std::process::id()));
    let mut framed = Vec::new();
    for i in &inputs {
        framed.extend((i.len() as u32).to_le_bytes());
        framed.extend(i);
    }
    std::fs::write(&file, &framed).unwrap();
    let out = run_ok(Command::new(&bin).arg(&file));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&bin);
    let go: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(go.len(), inputs.len());

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
