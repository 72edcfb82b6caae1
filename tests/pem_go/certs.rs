//! Certificate parity with Go's `x509.ParseCertificate`: thousands of generated certificates,
//! structurally varied (versions, serials, names in every string type, both time types at
//! their boundaries, public keys of several kinds and malformed ones, every extension Go
//! reads in valid, malformed, duplicated and critical forms, v1/v2 certificates carrying
//! extensions, non-DER encodings, damage). Whenever kubepki accepts one, Go accepts it too and
//! reads the same subject, issuer, serial, validity, CA flag, usages, SANs, key id, public key
//! and signature validity against the issuer.

use super::*;
use der::Encode;
use kubepki_pki::crypto::cert::Certificate;
use kubepki_pki::crypto::issue::CertTemplate;
use kubepki_pki::crypto::issuer::Issuer;
use kubepki_pki::crypto::key::{KeyAlgorithm, PrivateKey};

/// DER with occasional non-minimal (long-form) lengths, which Go refuses.
struct Gen<'a> {
    r: &'a mut Rng,
    /// Every knob an input used, for the per-case table.
    knobs: Vec<&'static str>,
}

fn len_der(n: usize, long: bool) -> Vec<u8> {
    if n < 128 && !long {
        return vec![n as u8];
    }
    let b: Vec<u8> = (n as u32)
        .to_be_bytes()
        .into_iter()
        .skip_while(|&x| x == 0)
        .collect();
    let mut out = vec![0x80 | b.len().max(1) as u8];
    if b.is_empty() {
        out.push(0);
    }
    out.extend(b);
    out
}

pub(crate) fn tlv(t: u8, c: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend(len_der(c.len(), false));
    v.extend(c);
    v
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// OID content bytes from dotted text.
pub(crate) fn oid(s: &str) -> Vec<u8> {
    let arcs: Vec<u64> = s.split('.').map(|a| a.parse().unwrap()).collect();
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    };
    push(arcs[0] * 40 + arcs[1]);
    for &a in &arcs[2..] {
        push(a);
    }
    out
}

pub(crate) fn oid_tlv(s: &str) -> Vec<u8> {
    tlv(0x06, &oid(s))
}

impl Gen<'_> {
    fn knob(&mut self, k: &'static str) {
        self.knobs.push(k);
    }
    fn chance(&mut self, p: usize) -> bool {
        self.r.chance(p)
    }
    fn below(&mut self, n: usize) -> usize {
        self.r.below(n)
    }
    /// A TLV whose length is now and then in the long form though short would do.
    fn tlv(&mut self, t: u8, c: &[u8]) -> Vec<u8> {
        let long = c.len() < 128 && self.r.below(300) == 0;
        if long {
            self.knob("non-minimal length");
        }
        let mut v = vec![t];
        v.extend(len_der(c.len(), long));
        v.extend(c);
        v
    }
    fn seq(&mut self, parts: &[Vec<u8>]) -> Vec<u8> {
        self.tlv(0x30, &parts.concat())
    }

    fn string_value(&mut self, text: &str) -> Vec<u8> {
        let bmp = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|c| c.to_be_bytes()).collect() };
        match self.below(90) {
            0 => {
                self.knob("name: PrintableString outside its alphabet");
                self.tlv(0x13, b"a_b")
            }
            1 => {
                self.knob("name: PrintableString with * and &");
                self.tlv(0x13, b"a*b&c")
            }
            2 => {
                self.knob("name: invalid UTF8String");
                self.tlv(0x0c, &[0x61, 0xc3, 0x28])
            }
            3 => {
                self.knob("name: IA5String");
                self.tlv(0x16, text.as_bytes())
            }
            4 => {
                self.knob("name: IA5String not ASCII");
                self.tlv(0x16, &[0x61, 0x80])
            }
            5 => {
                self.knob("name: BMPString");
                let b = bmp(text);
                self.tlv(0x1e, &b)
            }
            6 => {
                self.knob("name: BMPString with terminator");
                let mut b = bmp(text);
                b.extend([0, 0]);
                self.tlv(0x1e, &b)
            }
            7 => {
                self.knob("name: BMPString odd length");
                self.tlv(0x1e, &[0, 0x61, 0])
            }
            8 => {
                self.knob("name: BMPString unpaired surrogate");
                self.tlv(0x1e, &[0xd8, 0x00, 0x00, 0x61])
            }
            9 => {
                self.knob("name: T61String");
                self.tlv(0x14, text.as_bytes())
            }
            10 => {
                self.knob("name: T61String not UTF-8");
                self.tlv(0x14, &[0x6e, 0xe9])
            }
            11 => {
                self.knob("name: NumericString");
                self.tlv(0x12, b"12 34")
            }
            12 => {
                self.knob("name: NumericString with a letter");
                self.tlv(0x12, b"12a")
            }
            13 => {
                self.knob("name: OCTET STRING value");
                self.tlv(0x04, text.as_bytes())
            }
            14 => {
                self.knob("name: UTF8String non-ASCII");
                self.tlv(0x0c, "nœud-é".as_bytes())
            }
            15..=50 => self.tlv(0x13, text.as_bytes()),
            _ => self.tlv(0x0c, text.as_bytes()),
        }
    }

    fn atv(&mut self, oid_s: &str, text: &str) -> Vec<u8> {
        let mut parts = vec![oid_tlv(oid_s), self.string_value(text)];
        if self.r.below(300) == 0 {
            self.knob("name: attribute with a second value");
            parts.push(tlv(0x05, &[]));
        }
        self.seq(&parts)
    }

    fn name(&mut self, cn: &str) -> Vec<u8> {
        let mut rdns = Vec::new();
        if self.chance(50) {
            let mut set = Vec::new();
            for o in ["system:masters", "kubeadm:cluster-admins"]
                .iter()
                .take(1 + self.below(2))
            {
                set.push(self.atv("2.5.4.10", o));
            }
            rdns.push(self.tlv(0x31, &set.concat()));
        }
        if self.chance(10) {
            self.knob("name: OU and C");
            let ou = self.atv("2.5.4.11", "ops");
            let c = self.atv("2.5.4.6", "DE");
            rdns.push(self.tlv(0x31, &ou));
            rdns.push(self.tlv(0x31, &c));
        }
        if self.chance(3) {
            self.knob("name: empty RDN");
            rdns.push(self.tlv(0x31, &[]));
        }
        if !self.chance(3) {
            let a = self.atv("2.5.4.3", cn);
            rdns.push(self.tlv(0x31, &a));
        } else {
            self.knob("name: no CN");
        }
        if self.chance(4) {
            self.knob("name: two CNs");
            let a = self.atv("2.5.4.3", "second-cn");
            rdns.push(self.tlv(0x31, &a));
        }
        self.seq(&rdns)
    }

    fn time(&mut self) -> Vec<u8> {
        const TIMES: &[(u8, &str, &str)] = &[
            (0x17, "491231235959Z", "UTCTime 2049"),
            (0x17, "500101000000Z", "UTCTime 1950"),
            (0x18, "20500101000000Z", "GeneralizedTime 2050"),
            (0x18, "20491231235959Z", "GeneralizedTime before 2050"),
            (0x18, "19691231235959Z", "GeneralizedTime 1969"),
            (0x18, "20250101000000.5Z", "fractional GeneralizedTime"),
            (0x18, "20250101000000.000Z", "fractional GeneralizedTime"),
            (0x17, "2501010000Z", "UTCTime without seconds"),
            (0x17, "250101000000+0100", "UTCTime with an offset"),
            (0x17, "250101000000+0000", "UTCTime with an offset"),
            (0x18, "20250101000000", "GeneralizedTime without Z"),
            (0x17, "250230000000Z", "February 30"),
            (0x17, "240229000000Z", "February 29 of a leap year"),
            (0x17, "250229000000Z", "February 29 of a common year"),
            (0x17, "000229120000Z", "February 29 2000"),
            (0x17, "250101240000Z", "hour 24"),
            (0x17, "250101235960Z", "second 60"),
            (0x17, "250101000000z", "lowercase z"),
            (0x18, "00000101000000Z", "GeneralizedTime year 0"),
            (0x18, "99991231235959Z", "GeneralizedTime 9999"),
            (0x17, "2501 1000000Z", "UTCTime with a space"),
            (0x04, "250101000000Z", "time as OCTET STRING"),
        ];
        if self.chance(6) {
            let (t, s, k) = TIMES[self.below(TIMES.len())];
            self.knob(k);
            return self.tlv(t, s.as_bytes());
        }
        let y = 1990 + self.below(80);
        let s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            y,
            1 + self.below(12),
            1 + self.below(28),
            self.below(24),
            self.below(60),
            self.below(60)
        );
        if y < 2050 && !self.chance(5) {
            self.tlv(0x17, &s.as_bytes()[2..])
        } else {
            self.tlv(0x18, s.as_bytes())
        }
    }

    fn serial(&mut self) -> Vec<u8> {
        match self.below(60) {
            0 => {
                self.knob("negative serial");
                self.tlv(0x02, &[0x80, 0x01])
            }
            1 => {
                self.knob("zero serial");
                self.tlv(0x02, &[0x00])
            }
            2 => {
                self.knob("non-minimal serial");
                self.tlv(0x02, &[0x00, 0x12, 0x34])
            }
            3 => {
                self.knob("25-byte serial");
                let mut b = vec![0x11; 25];
                b[0] = 0x7f;
                self.tlv(0x02, &b)
            }
            4 => {
                self.knob("empty serial");
                self.tlv(0x02, &[])
            }
            _ => {
                let n = 1 + self.below(20);
                let mut b: Vec<u8> = (0..n).map(|_| self.r.next() as u8).collect();
                b[0] &= 0x7f;
                if b.len() > 1 && b[0] == 0 {
                    b[0] = 1;
                }
                self.tlv(0x02, &b)
            }
        }
    }

    fn critical(&mut self, critical: bool) -> Vec<u8> {
        match self.below(120) {
            0 => {
                self.knob("critical flag FALSE written out");
                tlv(0x01, &[0])
            }
            1 => {
                self.knob("critical flag not DER (0x01)");
                tlv(0x01, &[1])
            }
            _ if critical => tlv(0x01, &[0xff]),
            _ => Vec::new(),
        }
    }

    fn ext(&mut self, oid_s: &str, critical: bool, value: &[u8]) -> Vec<u8> {
        let c = self.critical(critical);
        let v = self.tlv(0x04, value);
        self.seq(&[oid_tlv(oid_s), c, v])
    }

    fn uri(&mut self) -> Vec<u8> {
        const URIS: &[&str] = &[
            "spiffe://cluster.local/ns/default/sa/node",
            "https://example.com:8443/a/b",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "HTTPS://upper.example/",
            "http://exa mple/",
            "http://%zz/",
            "http://[::1]/",
            "http://a..b/",
            "http://a/b?c=d",
            "://x",
            "http://a:port/",
            "mailto:a@b.example",
            "spiffe://a/",
            "x:/path",
            "http://user@h/",
            "http://h/p%20q",
            "relative/path",
            "http://a.b./",
            "http://",
            "https://x.example/#frag",
            "http://h/a(b)*!",
            "tel:+1-201-555-0123",
        ];
        let u = URIS[self.below(URIS.len())];
        self.knob("SAN: URI");
        self.tlv(0x86, u.as_bytes())
    }

    fn general_name(&mut self) -> Vec<u8> {
        // Half the names are plain, so that whole certificates get through often enough.
        let pick = if self.chance(50) {
            self.below(12)
        } else {
            self.below(24)
        };
        match pick {
            0..=5 => {
                let d = [
                    "node-1",
                    "kubernetes.default.svc",
                    "*.example.com",
                    "localhost",
                ][self.below(4)];
                self.tlv(0x82, d.as_bytes())
            }
            6 => {
                self.knob("SAN: non-ASCII DNS name");
                self.tlv(0x82, "nöde".as_bytes())
            }
            7 => {
                self.knob("SAN: empty DNS name");
                self.tlv(0x82, b"")
            }
            8..=10 => {
                let last = 1 + self.r.below(200) as u8;
                self.tlv(0x87, &[10, 0, 0, last])
            }
            11 => {
                let mut v6 = [0u8; 16];
                v6[15] = 1;
                self.tlv(0x87, &v6)
            }
            12 => {
                self.knob("SAN: IPv4-mapped IPv6");
                self.tlv(
                    0x87,
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9],
                )
            }
            13 => {
                self.knob("SAN: 5-byte IP");
                self.tlv(0x87, &[1, 2, 3, 4, 5])
            }
            14 => {
                self.knob("SAN: email");
                self.tlv(0x81, b"a@b.example")
            }
            15 => {
                self.knob("SAN: non-ASCII email");
                self.tlv(0x81, "ä@b.example".as_bytes())
            }
            16..=18 => self.uri(),
            19 => {
                self.knob("SAN: otherName");
                let inner = [
                    oid_tlv("1.3.6.1.4.1.311.20.2.3"),
                    tlv(0xa0, &tlv(0x0c, b"u")),
                ]
                .concat();
                self.tlv(0xa0, &inner)
            }
            20 => {
                self.knob("SAN: directoryName");
                let n = seq(&[]);
                self.tlv(0xa4, &n)
            }
            21 => {
                self.knob("SAN: constructed dNSName");
                let inner = tlv(0x16, b"hidden.example");
                self.tlv(0xa2, &inner)
            }
            22 => {
                self.knob("SAN: registeredID");
                self.tlv(0x88, &oid("1.2.3.4"))
            }
            _ => {
                self.knob("SAN: universal tag inside");
                self.tlv(0x04, b"x")
            }
        }
    }

    fn san(&mut self) -> Vec<u8> {
        let n = if self.chance(5) {
            self.knob("SAN: empty extension");
            0
        } else {
            1 + self.below(3)
        };
        let names: Vec<Vec<u8>> = (0..n).map(|_| self.general_name()).collect();
        let mut v = self.seq(&names);
        if self.r.below(100) == 0 {
            self.knob("SAN: trailing data");
            v.push(0);
        }
        let crit = self.chance(8);
        self.ext("2.5.29.17", crit, &v)
    }

    fn key_usage(&mut self) -> Vec<u8> {
        let v: Vec<u8> = match self.below(24) {
            0 => {
                self.knob("KU: nonzero padding bits");
                vec![0x05, 0xa1]
            }
            1 => {
                self.knob("KU: decipherOnly (bit 8)");
                vec![0x07, 0xa0, 0x80]
            }
            2 => {
                self.knob("KU: cRLSign");
                vec![0x01, 0x86]
            }
            3 => {
                self.knob("KU: empty");
                vec![0x00]
            }
            4 => vec![0x02, 0xa4],
            5 => {
                self.knob("KU: bits beyond 9");
                vec![0x00, 0xa0, 0x00, 0x40]
            }
            _ => vec![0x05, 0xa0],
        };
        let bits = self.tlv(0x03, &v);
        let crit = !self.chance(20);
        self.ext("2.5.29.15", crit, &bits)
    }

    fn basic_constraints(&mut self) -> Vec<u8> {
        let v = match self.below(20) {
            0 => {
                self.knob("BC: non-DER BOOLEAN");
                seq(&[tlv(0x01, &[0x01])])
            }
            1 => {
                self.knob("BC: FALSE written out");
                seq(&[tlv(0x01, &[0x00])])
            }
            2 => {
                self.knob("BC: path length only");
                seq(&[tlv(0x02, &[2])])
            }
            3 => {
                self.knob("BC: CA with path length 0");
                seq(&[tlv(0x01, &[0xff]), tlv(0x02, &[0])])
            }
            4 => {
                self.knob("BC: not a SEQUENCE");
                tlv(0x01, &[0xff])
            }
            5 => seq(&[]),
            _ => seq(&[tlv(0x01, &[0xff])]),
        };
        let crit = self.chance(80);
        self.ext("2.5.29.19", crit, &v)
    }

    fn eku(&mut self) -> Vec<u8> {
        const EKUS: &[&str] = &[
            "1.3.6.1.5.5.7.3.1",
            "1.3.6.1.5.5.7.3.2",
            "1.3.6.1.5.5.7.3.1",
            "1.3.6.1.5.5.7.3.2",
            "2.5.29.37.0",
            "1.3.6.1.5.5.7.3.3",
            "1.2.3.4.5",
        ];
        let n = self.below(4);
        if n == 0 {
            self.knob("EKU: empty");
        }
        let mut list: Vec<Vec<u8>> = (0..n)
            .map(|_| oid_tlv(EKUS[self.r.below(EKUS.len())]))
            .collect();
        if self.r.below(30) == 0 {
            self.knob("EKU: OID arc with a leading 0x80");
            list.push(tlv(0x06, &[0x2b, 0x80, 0x01]));
        }
        if self.r.below(30) == 0 {
            self.knob("EKU: OID arc of 2^31");
            list.push(tlv(0x06, &[0x2b, 0x88, 0x80, 0x80, 0x80, 0x00]));
        }
        let v = self.seq(&list);
        self.ext("2.5.29.37", false, &v)
    }

    fn name_constraints(&mut self) -> Vec<u8> {
        self.knob("name constraints");
        let base = |g: &mut Gen| -> (Vec<u8>, &'static str) {
            match g.below(12) {
                0 => (tlv(0x82, b".example.com"), "NC: DNS"),
                1 => (tlv(0x82, b"a..b"), "NC: bad DNS"),
                2 => (tlv(0x87, &[10, 0, 0, 0, 255, 0, 0, 0]), "NC: IP"),
                3 => (tlv(0x87, &[10, 0, 0, 0, 255, 0, 255, 0]), "NC: bad IP mask"),
                4 => (tlv(0x87, &[10, 0, 0, 0]), "NC: IP without mask"),
                5 => (tlv(0x81, b"a@b.example"), "NC: mailbox"),
                6 => (tlv(0x81, b"\"a b\"@b.example"), "NC: quoted mailbox"),
                7 => (tlv(0x81, b".a..b@c"), "NC: bad mailbox"),
                8 => (tlv(0x81, b".b.example"), "NC: email domain"),
                9 => (tlv(0x86, b".example.com"), "NC: URI domain"),
                10 => (tlv(0x86, b"10.0.0.1"), "NC: URI IP"),
                _ => (tlv(0xa4, &seq(&[])), "NC: directoryName"),
            }
        };
        let mut subtrees = Vec::new();
        for _ in 0..1 + self.below(2) {
            let (b, k) = base(self);
            self.knob(k);
            subtrees.push(seq(&[b]));
        }
        let v = match self.below(8) {
            0 => {
                self.knob("NC: empty");
                seq(&[])
            }
            1 => seq(&[tlv(0xa1, &subtrees.concat())]),
            _ => seq(&[tlv(0xa0, &subtrees.concat())]),
        };
        let crit = self.chance(50);
        self.ext("2.5.29.30", crit, &v)
    }

    fn other_ext(&mut self) -> Vec<u8> {
        match self.below(14) {
            0 | 1 => {
                let v = tlv(0x04, &[0x11; 20]);
                self.ext("2.5.29.14", false, &v)
            }
            2 => {
                self.knob("SKI: not an OCTET STRING");
                let v = tlv(0x02, &[1]);
                self.ext("2.5.29.14", false, &v)
            }
            3 | 4 => {
                let v = seq(&[tlv(0x80, &[0x22; 20])]);
                self.ext("2.5.29.35", false, &v)
            }
            5 => {
                self.knob("AKI: constructed [0]");
                let v = seq(&[tlv(0xa0, &tlv(0x04, &[1]))]);
                self.ext("2.5.29.35", false, &v)
            }
            6 => {
                self.knob("CRL distribution point");
                let v = seq(&[seq(&[tlv(
                    0xa0,
                    &tlv(0xa0, &tlv(0x86, b"http://crl.example/ca.crl")),
                )])]);
                self.ext("2.5.29.31", false, &v)
            }
            7 => {
                self.knob("CRL distribution point relative to issuer");
                let v = seq(&[seq(&[tlv(0xa0, &tlv(0xa1, &seq(&[])))])]);
                self.ext("2.5.29.31", false, &v)
            }
            8 => {
                self.knob("AIA");
                let v = seq(&[seq(&[
                    oid_tlv("1.3.6.1.5.5.7.48.1"),
                    tlv(0x86, b"http://ocsp.example"),
                ])]);
                self.ext("1.3.6.1.5.5.7.1.1", false, &v)
            }
            9 => {
                self.knob("AIA: no SEQUENCE");
                let v = tlv(0x04, b"x");
                self.ext("1.3.6.1.5.5.7.1.1", false, &v)
            }
            10 => {
                self.knob("policies");
                let v = seq(&[seq(&[oid_tlv("2.5.29.32.0")])]);
                let crit = self.chance(30);
                self.ext("2.5.29.32", crit, &v)
            }
            11 => {
                self.knob("policies: empty policy");
                let v = seq(&[seq(&[])]);
                self.ext("2.5.29.32", false, &v)
            }
            12 => {
                self.knob("unknown extension, critical");
                let v = self.tlv(0x04, &[0x05, 0x00]);
                self.seq(&[oid_tlv("1.2.3.4.5"), tlv(0x01, &[0xff]), v])
            }
            _ => {
                self.knob("unknown extension");
                self.ext("1.2.3.4.5", false, &[0x05, 0x00])
            }
        }
    }

    fn extensions(&mut self) -> Vec<Vec<u8>> {
        let mut list = Vec::new();
        let (mut has_ku, mut has_san) = (false, false);
        if self.chance(85) {
            list.push(self.key_usage());
            has_ku = true;
        }
        if self.chance(40) {
            list.push(self.basic_constraints());
        }
        if self.chance(60) {
            list.push(self.eku());
        }
        if self.chance(75) {
            list.push(self.san());
            has_san = true;
        }
        if self.chance(6) {
            list.push(self.name_constraints());
        }
        for _ in 0..self.below(3) {
            list.push(self.other_ext());
        }
        if self.chance(6) && !list.is_empty() {
            // The same extension again: identical, or (SAN, KU) with other contents.
            self.knob("duplicate extension");
            let again = match self.below(3) {
                0 if has_san => self.san(),
                1 if has_ku => self.key_usage(),
                _ => list[self.below(list.len())].clone(),
            };
            list.push(again);
        }
        list
    }
}

/// The subject public keys the generator draws from.
struct Keys {
    p256: PrivateKey,
    p384: PrivateKey,
    rsa: PrivateKey,
}

/// Rebuilds a SubjectPublicKeyInfo from algorithm, parameters and key bits.
fn spki(alg: &str, params: Option<Vec<u8>>, unused: u8, bits: &[u8]) -> Vec<u8> {
    let mut ai = vec![oid_tlv(alg)];
    ai.extend(params);
    let mut bs = vec![unused];
    bs.extend(bits);
    seq(&[seq(&ai), tlv(0x03, &bs)])
}

/// The key bits of a DER SubjectPublicKeyInfo (it ends with the BIT STRING).
fn key_bits(spki_der: &[u8]) -> Vec<u8> {
    let info = x509_cert::spki::SubjectPublicKeyInfoRef::try_from(spki_der).unwrap();
    info.subject_public_key.raw_bytes().to_vec()
}

impl Gen<'_> {
    /// The subject's SPKI, and the key for self-signing when it is a real one.
    fn public_key<'k>(&mut self, keys: &'k Keys) -> (Vec<u8>, Option<&'k PrivateKey>) {
        let p256 = key_bits(keys.p256.public_key_der());
        match self.below(80) {
            0 => {
                self.knob("key: RSA without NULL parameters");
                let b = key_bits(keys.rsa.public_key_der());
                (spki("1.2.840.113549.1.1.1", None, 0, &b), None)
            }
            1 => {
                self.knob("key: compressed EC point");
                let mut b = p256[..33].to_vec();
                b[0] = 2 + (p256[64] & 1);
                (
                    spki(
                        "1.2.840.10045.2.1",
                        Some(oid_tlv("1.2.840.10045.3.1.7")),
                        0,
                        &b,
                    ),
                    None,
                )
            }
            2 => {
                self.knob("key: EC point off the curve");
                let mut b = p256.clone();
                b[64] ^= 1;
                (
                    spki(
                        "1.2.840.10045.2.1",
                        Some(oid_tlv("1.2.840.10045.3.1.7")),
                        0,
                        &b,
                    ),
                    None,
                )
            }
            3 => {
                self.knob("key: EC explicit parameters");
                let params = seq(&[tlv(0x02, &[1]), seq(&[oid_tlv("1.2.840.10045.1.1")])]);
                (spki("1.2.840.10045.2.1", Some(params), 0, &p256), None)
            }
            4 => {
                self.knob("key: P-256 point named P-521");
                (
                    spki("1.2.840.10045.2.1", Some(oid_tlv("1.3.132.0.35")), 0, &p256),
                    None,
                )
            }
            5 => {
                self.knob("key: Ed25519");
                let b: Vec<u8> = (0..32).map(|_| self.r.next() as u8).collect();
                (spki("1.3.101.112", None, 0, &b), None)
            }
            6 => {
                self.knob("key: Ed25519 with parameters");
                (spki("1.3.101.112", Some(tlv(0x05, &[])), 0, &[7; 32]), None)
            }
            7 => {
                self.knob("key: unknown algorithm");
                (spki("1.2.3.4", None, 0, &[1, 2, 3]), None)
            }
            8 => {
                self.knob("key: BIT STRING with unused bits");
                let mut b = p256.clone();
                b.push(0);
                (
                    spki(
                        "1.2.840.10045.2.1",
                        Some(oid_tlv("1.2.840.10045.3.1.7")),
                        1,
                        &b,
                    ),
                    None,
                )
            }
            9 => {
                self.knob("key: RSA exponent 0");
                let b = seq(&[tlv(0x02, &[0x00, 0xc3, 0x11, 0x22]), tlv(0x02, &[0])]);
                (
                    spki("1.2.840.113549.1.1.1", Some(tlv(0x05, &[])), 0, &b),
                    None,
                )
            }
            10 => {
                self.knob("key: RSA 1024");
                let mut n = vec![0x00, 0xc0];
                n.extend(vec![0x5a; 127]);
                let b = seq(&[tlv(0x02, &n), tlv(0x02, &[1, 0, 1])]);
                (
                    spki("1.2.840.113549.1.1.1", Some(tlv(0x05, &[])), 0, &b),
                    None,
                )
            }
            11..=20 => (keys.p384.public_key_der().to_vec(), Some(&keys.p384)),
            21..=40 => (keys.rsa.public_key_der().to_vec(), Some(&keys.rsa)),
            _ => (keys.p256.public_key_der().to_vec(), Some(&keys.p256)),
        }
    }
}

struct Cas {
    ec: (Certificate, PrivateKey),
    rsa: (Certificate, PrivateKey),
}

/// One generated input: the issuer's DER (empty for none) and the certificate, and its knobs.
fn certificate(r: &mut Rng, keys: &Keys, cas: &Cas) -> (Vec<u8>, Vec<u8>, Vec<&'static str>) {
    let mut g = Gen {
        r,
        knobs: Vec::new(),
    };
    let (subject_spki, subject_key) = g.public_key(keys);
    let self_signed = subject_key.is_some() && g.chance(12);
    let (ca_cert, ca_key) = if g.chance(50) { &cas.ec } else { &cas.rsa };
    let subject = g.name("kube-apiserver");
    let (issuer_der, signing_key, issuer_name) = if self_signed {
        g.knob("self-signed");
        (None, subject_key.unwrap(), subject.clone())
    } else if g.chance(3) {
        g.knob("issuer name of another CA");
        (Some(ca_cert), ca_key, g.name("other-ca"))
    } else {
        (Some(ca_cert), ca_key, ca_cert.subject_der().to_vec())
    };

    let version = match g.below(40) {
        0..=2 => {
            g.knob("version 1");
            None
        }
        3 => {
            g.knob("version 1 written out");
            Some(0u8)
        }
        4 => {
            g.knob("version 2");
            Some(1)
        }
        5 => {
            g.knob("version 4");
            Some(3)
        }
        _ => Some(2),
    };
    let mut tbs = Vec::new();
    match version {
        Some(v) if g.r.below(200) == 0 => {
            g.knob("version not minimally encoded");
            tbs.push(g.tlv(0xa0, &tlv(0x02, &[0, v])));
        }
        Some(v) => {
            let int = tlv(0x02, &[v]);
            tbs.push(g.tlv(0xa0, &int));
        }
        None => {}
    }
    tbs.push(g.serial());
    let alg = signing_key.signature_algorithm().to_der().unwrap();
    let (inner_alg, outer_alg) = match g.below(40) {
        0 => {
            g.knob("inner and outer signature algorithms differ");
            let other = if alg.len() > 14 {
                seq(&[oid_tlv("1.2.840.113549.1.1.12"), tlv(0x05, &[])])
            } else {
                seq(&[oid_tlv("1.2.840.10045.4.3.4")])
            };
            if g.chance(50) {
                (alg.clone(), other)
            } else {
                (other, alg.clone())
            }
        }
        1 => {
            g.knob("unknown signature algorithm");
            let a = seq(&[oid_tlv("1.2.3.4.5")]);
            (a.clone(), a)
        }
        2 => {
            g.knob("SHA-1 signature algorithm");
            let a = if alg.len() > 14 {
                seq(&[oid_tlv("1.2.840.113549.1.1.5"), tlv(0x05, &[])])
            } else {
                seq(&[oid_tlv("1.2.840.10045.4.1")])
            };
            (a.clone(), a)
        }
        _ => (alg.clone(), alg.clone()),
    };
    tbs.push(inner_alg);
    tbs.push(issuer_name);
    let nb = g.time();
    let na = g.time();
    tbs.push(g.seq(&[nb, na]));
    tbs.push(subject);
    tbs.push(subject_spki);
    if g.chance(3) {
        g.knob("unique identifiers");
        tbs.push(tlv(0x81, &[0x00, 0xaa]));
        tbs.push(tlv(0x82, &[0x00, 0xbb]));
    }
    // Extensions whatever the version: v1 and v2 certificates carrying them are a case.
    if g.chance(90) {
        let exts = g.extensions();
        if matches!(version, None | Some(0) | Some(1)) {
            g.knob("version 1 or 2 with extensions");
        }
        let list = g.seq(&exts);
        tbs.push(g.tlv(0xa3, &list));
    }
    let tbs = g.seq(&tbs);
    let mut sig = signing_key.sign(&tbs).unwrap();
    if g.chance(4) {
        g.knob("bad signature");
        let i = g.below(sig.len());
        sig[i] ^= 0x10;
    }
    let mut bs = vec![0u8];
    bs.extend(sig);
    let sig_bits = if g.r.below(100) == 0 {
        g.knob("signature BIT STRING with unused bits");
        let mut b = bs.clone();
        b[0] = 1;
        b.push(0);
        tlv(0x03, &b)
    } else {
        tlv(0x03, &bs)
    };
    let mut der = g.seq(&[tbs, outer_alg, sig_bits]);
    if g.chance(2) {
        match g.below(3) {
            0 => {
                g.knob("damage: trailing byte");
                der.push(0);
            }
            1 => {
                g.knob("damage: truncated");
                let n = g.below(der.len());
                der.truncate(n);
            }
            _ => {
                g.knob("damage: byte flipped");
                let i = g.below(der.len());
                der[i] ^= 1 << g.below(8);
            }
        }
    }
    let issuer = match issuer_der {
        Some(c) => c.der().to_vec(),
        None => der.clone(),
    };
    let knobs = std::mem::take(&mut g.knobs);
    (issuer, der, knobs)
}

fn ca(alg: KeyAlgorithm, cn: &str) -> (Certificate, PrivateKey) {
    let key = PrivateKey::generate(alg).unwrap();
    let key_pem = key.to_pem().unwrap();
    let ca = Issuer::new_root(
        &CertTemplate {
            common_name: cn.into(),
            is_ca: true,
            ..Default::default()
        },
        key,
        time::OffsetDateTime::now_utc(),
        std::time::Duration::from_secs(3650 * 24 * 3600),
        std::path::Path::new("ca.crt"),
        std::path::Path::new("ca.key"),
    )
    .unwrap();
    (
        ca.cert().clone(),
        PrivateKey::from_pem(key_pem.as_bytes()).unwrap(),
    )
}

/// What Go prints for a certificate kubepki accepted, computed from kubepki's reading.
fn ours(c: &Certificate, issuer: &[u8], go_key_type: &str) -> String {
    let b = |v: bool| if v { "1" } else { "0" };
    let ku = c.key_usage.map_or("0,0,0,0,0,0".to_string(), |k| {
        [
            "1",
            b(k.critical),
            b(k.digital_signature),
            b(k.key_encipherment),
            b(k.key_cert_sign),
            b(k.other),
        ]
        .join(",")
    });
    let serial = c.serial_hex.replace(':', "");
    let serial = serial.trim_start_matches('0');
    // kubepki names only kubeadm's key types; for the others it must not claim one.
    let key_type = match c.key_algorithm {
        Some(a) => a.as_str().to_string(),
        None => {
            assert!(
                !KeyAlgorithm::ALL.iter().any(|a| a.as_str() == go_key_type),
                "Go reads a {go_key_type} key that kubepki does not recognise"
            );
            go_key_type.to_string()
        }
    };
    let issuer = Certificate::from_der(issuer).expect("issuers are well-formed");
    [
        "OK".to_string(),
        hex(c.subject_der()),
        hex(c.common_name.as_bytes()),
        hexes(&c.organizations),
        hex(c.issuer_der()),
        if serial.is_empty() { "0" } else { serial }.to_string(),
        c.not_before.unix_timestamp().to_string(),
        c.not_after.unix_timestamp().to_string(),
        b(c.is_ca).to_string(),
        ku,
        format!(
            "{},{},{}",
            b(c.server_auth),
            b(c.client_auth),
            b(c.other_ext_key_usage)
        ),
        hexes(&c.dns_names),
        c.ip_addresses
            .iter()
            .map(ip16)
            .collect::<Vec<_>>()
            .join(","),
        hexes(&c.emails),
        hexes(&c.uris),
        c.subject_key_id.as_deref().map_or("-".to_string(), hex),
        hex(c.public_key_der()),
        key_type,
        if c.is_signed_by(&issuer) {
            "sig-ok"
        } else {
            "sig-bad"
        }
        .to_string(),
    ]
    .join("|")
}

/// Whatever certificate kubepki reads, Go's x509 reads the same facts from it.
#[test]
fn certificate_fields_agree_with_go() {
    let keys = Keys {
        p256: PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
        p384: PrivateKey::generate(KeyAlgorithm::EcdsaP384).unwrap(),
        rsa: PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap(),
    };
    let cas = Cas {
        ec: ca(KeyAlgorithm::EcdsaP256, "etcd-ca"),
        rsa: ca(KeyAlgorithm::Rsa2048, "kubernetes"),
    };
    let mut r = Rng(0x5851_F42D_4C95_7F2D);
    let generated: Vec<_> = (0..12_000)
        .map(|_| certificate(&mut r, &keys, &cas))
        .collect();
    let inputs: Vec<Vec<u8>> = generated
        .iter()
        .map(|(issuer, der, _)| {
            let mut v = (issuer.len() as u32).to_le_bytes().to_vec();
            v.extend(issuer);
            v.extend(der);
            v
        })
        .collect();
    let go = run_go("cert", &inputs);
    let mut tally = Tally::default();
    for (i, ((issuer, der, knobs), go_line)) in generated.iter().zip(&go).enumerate() {
        let go_ok = go_line.starts_with("OK");
        let col = match Certificate::from_der(der) {
            Ok(c) => {
                assert!(
                    go_ok,
                    "certificate #{i} ({knobs:?}) is read by kubepki but refused by Go: {}",
                    hex(der)
                );
                let go_key_type = go_line.split('|').nth(17).unwrap_or("");
                assert_eq!(
                    ours(&c, issuer, go_key_type),
                    *go_line,
                    "certificate #{i} ({knobs:?}) reads differently in Go: {}",
                    hex(der)
                );
                1
            }
            Err(_) if go_ok => 2,
            Err(_) => 3,
        };
        tally.record(knobs, col);
    }
    let (both, only_go, neither) = tally.report("certificates");
    assert!(both > 2000 && only_go > 300 && neither > 1000);
    // Every case must be reached, and the cases Go refuses must be refused by kubepki.
    tally.check(
        5,
        &[
            "duplicate extension",
            "inner and outer signature algorithms differ",
            "version 4",
            "fractional GeneralizedTime",
            "name: PrintableString outside its alphabet",
            "SAN: non-ASCII DNS name",
            "critical flag not DER (0x01)",
            "non-minimal serial",
            "non-minimal length",
            "version 1 or 2 with extensions",
            // Go reads these, but refuses to verify a chain with an unhandled critical
            // extension, and Go 1.23 and later refuse negative serials: kubepki refuses both.
            "unknown extension, critical",
            "negative serial",
        ],
    );
}
