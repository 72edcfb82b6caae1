//! DER reading with the rules of Go's `golang.org/x/crypto/cryptobyte` (what crypto/x509
//! parses certificates with), tightened where Go is lenient, so that whatever this reader
//! accepts, Go reads the same way. Certificates (`cert.rs`) and private keys (`key.rs`) are
//! read with it, step for step as Go's `parser.go`, `sec1.go` and `pkcs8.go` do.
//!
//! Only the single-byte tags cryptobyte reads; definite lengths in the fewest bytes (as
//! cryptobyte and encoding/asn1 demand). Every method returns `None` on malformed input and
//! consumes nothing useful then: callers turn that into an error naming the field.

/// Universal and context-specific tags as full identifier bytes (class, constructed bit, number).
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const NUMERIC_STRING: u8 = 0x12;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const T61_STRING: u8 = 0x14;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const BMP_STRING: u8 = 0x1e;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;

    /// `[n]` primitive, context-specific.
    pub const fn ctx(n: u8) -> u8 {
        0x80 | n
    }
    /// `[n]` constructed, context-specific.
    pub const fn ctx_cons(n: u8) -> u8 {
        0xa0 | n
    }
}

/// A read position in DER bytes, like cryptobyte.String.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Der<'a>(pub &'a [u8]);

/// A BIT STRING: whole bytes and how many bits of them count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitString<'a> {
    pub bytes: &'a [u8],
    pub bit_len: usize,
}

impl BitString<'_> {
    /// Bit `i` counting from the most significant bit of the first byte (Go's `At`).
    pub fn at(&self, i: usize) -> bool {
        i < self.bit_len && self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }
}

impl<'a> Der<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn peek(&self, t: u8) -> bool {
        self.0.first() == Some(&t)
    }

    /// One element: (tag, whole element, contents).
    pub fn read_any_element(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let s = self.0;
        let (&t, rest) = s.split_first()?;
        // cryptobyte reads no high tag numbers.
        if t & 0x1f == 0x1f {
            return None;
        }
        let (&len_byte, rest) = rest.split_first()?;
        let (header, len) = if len_byte & 0x80 == 0 {
            (2, usize::from(len_byte))
        } else {
            let n = usize::from(len_byte & 0x7f);
            // 0 is BER's indefinite length; more than 4 bytes is more than cryptobyte reads.
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            // DER: the long form only from 128 on, and no leading zero byte.
            if len < 128 || rest[0] == 0 {
                return None;
            }
            (2 + n, len)
        };
        let end = header.checked_add(len)?;
        if s.len() < end {
            return None;
        }
        self.0 = &s[end..];
        Some((t, &s[..end], &s[header..end]))
    }

    pub fn read_any(&mut self) -> Option<(u8, Der<'a>)> {
        self.read_any_element().map(|(t, _, c)| (t, Der(c)))
    }

    /// The contents of the next element, which must have tag `t`.
    pub fn read(&mut self, t: u8) -> Option<Der<'a>> {
        let mut copy = *self;
        match copy.read_any_element()? {
            (got, _, c) if got == t => {
                *self = copy;
                Some(Der(c))
            }
            _ => None,
        }
    }

    /// The whole next element (header included), which must have tag `t`.
    pub fn read_element(&mut self, t: u8) -> Option<&'a [u8]> {
        let mut copy = *self;
        match copy.read_any_element()? {
            (got, e, _) if got == t => {
                *self = copy;
                Some(e)
            }
            _ => None,
        }
    }

    /// `Some(None)` when the next element is not `t`; `None` when it is but is malformed.
    pub fn read_optional(&mut self, t: u8) -> Option<Option<Der<'a>>> {
        if self.peek(t) {
            self.read(t).map(Some)
        } else {
            Some(None)
        }
    }

    /// An INTEGER's content bytes, minimally encoded (as cryptobyte's checkASN1Integer).
    pub fn read_integer_bytes(&mut self) -> Option<&'a [u8]> {
        let b = self.read(tag::INTEGER)?.0;
        match b {
            [] => None,
            [0, next, ..] if next & 0x80 == 0 => None,
            [0xff, next, ..] if next & 0x80 != 0 => None,
            _ => Some(b),
        }
    }

    /// An INTEGER that fits Go's `int` (64 bits here, as on the platforms Kubernetes ships for).
    pub fn read_i64(&mut self) -> Option<i64> {
        let b = self.read_integer_bytes()?;
        if b.len() > 8 {
            return None;
        }
        let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for &x in b {
            v = (v << 8) | i64::from(x);
        }
        Some(v)
    }

    /// An OBJECT IDENTIFIER's content bytes, checked as cryptobyte does (each arc below 2^31)
    /// and minimally encoded (no arc starts with 0x80), so equal OIDs have equal bytes.
    pub fn read_oid(&mut self) -> Option<&'a [u8]> {
        let b = self.read(tag::OID)?.0;
        if b.is_empty() {
            return None;
        }
        let mut i = 0;
        while i < b.len() {
            let start = i;
            let mut v: u64 = 0;
            loop {
                let x = *b.get(i)?;
                if i == start && x == 0x80 {
                    return None;
                }
                if i - start == 5 || v >= 1 << 24 {
                    return None;
                }
                v = (v << 7) | u64::from(x & 0x7f);
                i += 1;
                if x & 0x80 == 0 {
                    break;
                }
            }
        }
        Some(b)
    }

    /// BOOLEAN, DER only: 0x00 or 0xff.
    pub fn read_bool(&mut self) -> Option<bool> {
        match self.read(tag::BOOLEAN)?.0 {
            [0] => Some(false),
            [0xff] => Some(true),
            _ => None,
        }
    }

    /// BIT STRING with cryptobyte's checks: at most 7 unused bits, and those zero.
    pub fn read_bit_string(&mut self) -> Option<BitString<'a>> {
        let b = self.read(tag::BIT_STRING)?.0;
        let (&pad, bytes) = b.split_first()?;
        if pad > 7 || (bytes.is_empty() && pad != 0) {
            return None;
        }
        if let Some(&last) = bytes.last()
            && last & ((1u8 << pad) - 1) != 0
        {
            return None;
        }
        Some(BitString {
            bytes,
            bit_len: bytes.len() * 8 - usize::from(pad),
        })
    }

    /// A BIT STRING of whole bytes (keys and signatures: Go right-aligns anything else).
    pub fn read_bit_string_bytes(&mut self) -> Option<&'a [u8]> {
        let b = self.read_bit_string()?;
        (b.bit_len == b.bytes.len() * 8).then_some(b.bytes)
    }
}

/// Formats an OID's content bytes as dotted arcs (for messages).
pub(crate) fn oid_string(b: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for &x in b {
        v = (v << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_der_only() {
        // Short form, and long form from 128 on.
        assert!(Der(&[0x04, 0x01, 0xaa]).read(tag::OCTET_STRING).is_some());
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 128]);
        assert!(Der(&long).read(tag::OCTET_STRING).is_some());
        // Long form for a short length, a leading zero length byte, indefinite length.
        assert!(
            Der(&[0x04, 0x81, 0x01, 0xaa])
                .read(tag::OCTET_STRING)
                .is_none()
        );
        let mut padded = vec![0x04, 0x82, 0x00, 0x80];
        padded.extend([0u8; 128]);
        assert!(Der(&padded).read(tag::OCTET_STRING).is_none());
        assert!(Der(&[0x30, 0x80, 0x00, 0x00]).read(tag::SEQUENCE).is_none());
        // High tag numbers.
        assert!(Der(&[0x1f, 0x22, 0x00]).read_any().is_none());
    }

    #[test]
    fn integers_booleans_oids_bits() {
        assert_eq!(Der(&[0x02, 0x01, 0xff]).read_i64(), Some(-1));
        assert_eq!(Der(&[0x02, 0x02, 0x00, 0x80]).read_i64(), Some(128));
        assert!(Der(&[0x02, 0x02, 0x00, 0x7f]).read_i64().is_none());
        assert!(Der(&[0x02, 0x02, 0xff, 0x80]).read_i64().is_none());
        assert!(Der(&[0x02, 0x00]).read_i64().is_none());
        assert!(Der(&[0x01, 0x01, 0x01]).read_bool().is_none());
        assert_eq!(Der(&[0x01, 0x01, 0xff]).read_bool(), Some(true));
        assert!(Der(&[0x06, 0x02, 0x2a, 0x80]).read_oid().is_none());
        assert!(Der(&[0x06, 0x03, 0x2a, 0x80, 0x01]).read_oid().is_none());
        assert_eq!(oid_string(&[0x55, 0x1d, 0x11]), "2.5.29.17");
        assert_eq!(oid_string(&[0x2a, 0x86, 0x48]), "1.2.840");
        // 2^31 as an arc is more than Go reads.
        assert!(
            Der(&[0x06, 0x06, 0x2a, 0x88, 0x80, 0x80, 0x80, 0x00])
                .read_oid()
                .is_none()
        );
        assert!(
            Der(&[0x06, 0x06, 0x2a, 0x87, 0xff, 0xff, 0xff, 0x7f])
                .read_oid()
                .is_some()
        );
        let bs = Der(&[0x03, 0x02, 0x05, 0xa0]).read_bit_string().unwrap();
        assert!(bs.at(0) && !bs.at(1) && bs.at(2) && bs.bit_len == 3);
        assert!(Der(&[0x03, 0x02, 0x05, 0xa1]).read_bit_string().is_none());
        assert!(Der(&[0x03, 0x01, 0x01]).read_bit_string().is_none());
    }
}
