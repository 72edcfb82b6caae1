//! PEM exactly as Go's `encoding/pem` reads and writes it.
//!
//! Every party kubepki talks to (kube-apiserver, the controller-manager's signer, the kubelet,
//! etcd) decodes PEM with Go. A decoder that finds a different block than Go's would let us
//! judge one thing while they use another, so [`decode`] is Go's `pem.Decode`, step for step:
//! a `-----BEGIN ` counts only at the start of the data or right after a newline, a candidate
//! that fails any check is skipped silently, and the search goes on after it.
//!
//! kubepki then accepts only input with nothing to skip: [`parse_all`] requires the data to be
//! PEM blocks with nothing but whitespace around and between them, and no headers, so that any
//! reader, Go's included, finds the same blocks in the same order.

pub use crate::error::PemError;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const BEGIN: &[u8] = b"\n-----BEGIN ";
const END: &[u8] = b"\n-----END ";
const DASHES: &[u8] = b"-----";

/// Go's `base64.StdEncoding` as `pem.Decode` uses it: padding required, trailing bits ignored
/// (it is not `.Strict()`); CR and LF are skipped by the caller, as Go's decoder skips them.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// A block as Go's `pem.Decode` returns it, and where it lies in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The type from the BEGIN line ("CERTIFICATE REQUEST").
    pub label: String,
    /// Whether Go saw `Key: Value` header lines in the block.
    pub has_headers: bool,
    /// The decoded contents (DER).
    pub der: Vec<u8>,
    /// Offset of the `-----BEGIN` line.
    pub start: usize,
    /// Offset where Go's `rest` begins (after the END line and its newline).
    pub end: usize,
}

/// Go's `getLine`: the first line without its line ending and trailing spaces and tabs, and
/// how many bytes it spans including the line ending.
fn get_line(data: &[u8]) -> (&[u8], usize) {
    let (mut i, consumed) = match data.iter().position(|&b| b == b'\n') {
        None => (data.len(), data.len()),
        Some(i) => (i, i + 1),
    };
    if consumed > i && i > 0 && data[i - 1] == b'\r' {
        i -= 1;
    }
    let mut line = &data[..i];
    while let [rest @ .., b' ' | b'\t'] = line {
        line = rest;
    }
    (line, consumed)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Go's base64 step of `pem.Decode`: spaces and tabs removed, CR and LF skipped.
fn go_base64(data: &[u8]) -> Option<Vec<u8>> {
    let cleaned: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    GO_STD.decode(cleaned).ok()
}

/// Go's `pem.Decode(data[from..])`: the first block Go finds at or after `from`, with offsets
/// into `data`; `None` where Go returns a nil block.
pub fn decode(data: &[u8], from: usize) -> Option<Block> {
    let mut pos = from.min(data.len());
    loop {
        let rest = &data[pos..];
        let start;
        if rest.starts_with(&BEGIN[1..]) {
            start = pos;
            pos += BEGIN.len() - 1;
        } else if let Some(i) = find(rest, BEGIN) {
            start = pos + i + 1;
            pos += i + BEGIN.len();
        } else {
            return None;
        }

        let (type_line, n) = get_line(&data[pos..]);
        pos += n;
        let Some(label) = type_line.strip_suffix(DASHES) else {
            continue;
        };

        let mut has_headers = false;
        loop {
            if pos == data.len() {
                return None;
            }
            let (line, n) = get_line(&data[pos..]);
            if !line.contains(&b':') {
                break;
            }
            has_headers = true;
            pos += n;
        }

        let rest = &data[pos..];
        let (end_index, trailer_index) = if !has_headers && rest.starts_with(&END[1..]) {
            (0, END.len() - 1)
        } else {
            match find(rest, END) {
                Some(i) => (i, i + END.len()),
                None => continue,
            }
        };
        let trailer = &rest[trailer_index..];
        let trailer_len = label.len() + DASHES.len();
        if trailer.len() < trailer_len {
            continue;
        }
        let (trailer, rest_of_end_line) = trailer.split_at(trailer_len);
        if !trailer.starts_with(label) || !trailer.ends_with(DASHES) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }
        let Some(der) = go_base64(&rest[..end_index]) else {
            continue;
        };
        let after_end = pos + end_index + END.len() - 1;
        let (_, n) = get_line(&data[after_end..]);
        return Some(Block {
            label: String::from_utf8_lossy(label).into_owned(),
            has_headers,
            der,
            start,
            end: after_end + n,
        });
    }
}

fn outside(data: &[u8], from: usize, to: usize) -> Result<(), PemError> {
    match data[from..to].iter().position(|b| !b.is_ascii_whitespace()) {
        None => Ok(()),
        Some(i) => {
            let offset = from + i;
            let line = 1 + data[..offset].iter().filter(|&&b| b == b'\n').count();
            Err(PemError::TextOutside { offset, line })
        }
    }
}

/// Every block of `data`, which must be PEM blocks without headers and with nothing but
/// whitespace around them: the blocks Go reads, and nothing Go would skip.
pub fn parse_all(data: &[u8]) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    let mut pos = 0;
    while let Some(b) = decode(data, pos) {
        outside(data, pos, b.start)?;
        if b.has_headers {
            return Err(PemError::Headers {
                index: blocks.len() + 1,
                label: b.label,
            });
        }
        pos = b.end;
        blocks.push(b);
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    outside(data, pos, data.len())?;
    Ok(blocks)
}

/// The contents of the single block of `data`, which must be labelled `label`.
pub fn parse_one(data: &[u8], label: &str) -> Result<Vec<u8>, PemError> {
    let mut blocks = parse_all(data)?;
    if blocks.len() != 1 {
        return Err(PemError::NotSingle {
            count: blocks.len(),
        });
    }
    let b = blocks.pop().expect("one block");
    if b.label != label {
        return Err(PemError::UnexpectedLabel {
            index: 1,
            found: b.label,
            expected: label.to_string(),
        });
    }
    Ok(b.der)
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64 base64 characters per line, LF endings.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(label: &str, der: &[u8]) -> String {
        encode(label, der)
    }

    #[test]
    fn round_trip_and_line_length() {
        let der: Vec<u8> = (0..200u8).collect();
        let text = block("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        let b = decode(text.as_bytes(), 0).unwrap();
        assert_eq!(
            (b.label.as_str(), b.der.as_slice()),
            ("CERTIFICATE", &der[..])
        );
        assert_eq!(b.end, text.len());
        assert_eq!(parse_one(text.as_bytes(), "CERTIFICATE").unwrap(), der);
        // An empty block is valid in Go too.
        assert_eq!(parse_one(block("X", b"").as_bytes(), "X").unwrap(), b"");
    }

    #[test]
    fn begin_counts_only_at_a_line_start() {
        let a = block("CERTIFICATE REQUEST", b"aaaa");
        let b = block("CERTIFICATE REQUEST", b"bbbb");
        // Go skips A (a space precedes its BEGIN on the same line) and finds B.
        let crafted = format!(" {a}{b}");
        let found = decode(crafted.as_bytes(), 0).unwrap();
        assert_eq!(found.der, b"bbbb");
        assert!(matches!(
            parse_all(crafted.as_bytes()),
            Err(PemError::TextOutside { offset: 1, .. })
        ));
        let prefixed = format!("junk{a}");
        assert!(decode(prefixed.as_bytes(), 0).is_none());
        assert!(parse_all(prefixed.as_bytes()).is_err());
    }

    #[test]
    fn strict_rules() {
        let a = block("CERTIFICATE REQUEST", b"aaaa");
        let b = block("CERTIFICATE REQUEST", b"bbbb");
        let two = format!("{a}{b}");
        assert_eq!(parse_all(two.as_bytes()).unwrap().len(), 2);
        assert_eq!(
            parse_one(two.as_bytes(), "CERTIFICATE REQUEST"),
            Err(PemError::NotSingle { count: 2 })
        );
        let trailing = format!("{a}junk\n");
        assert!(matches!(
            parse_one(trailing.as_bytes(), "CERTIFICATE REQUEST"),
            Err(PemError::TextOutside { .. })
        ));
        let spaced = format!("\r\n  \n{}\n\t\n", a.replace('\n', "\r\n"));
        assert_eq!(
            parse_one(spaced.as_bytes(), "CERTIFICATE REQUEST").unwrap(),
            b"aaaa"
        );
        let headers = a.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1);
        assert!(decode(headers.as_bytes(), 0).unwrap().has_headers);
        assert!(matches!(
            parse_all(headers.as_bytes()),
            Err(PemError::Headers { .. })
        ));
        assert_eq!(
            parse_one(a.as_bytes(), "CERTIFICATE"),
            Err(PemError::UnexpectedLabel {
                index: 1,
                found: "CERTIFICATE REQUEST".into(),
                expected: "CERTIFICATE".into()
            })
        );
        assert_eq!(parse_all(b" \n"), Err(PemError::NoBlock));
        // A broken candidate is text Go skips: refused.
        let broken = format!("-----BEGIN X-----\n!!!!\n-----END X-----\n{a}");
        assert!(matches!(
            parse_all(broken.as_bytes()),
            Err(PemError::TextOutside { offset: 0, .. })
        ));
    }

    #[test]
    fn go_base64_details() {
        // Trailing bits are ignored, padding is required, CR/LF/space/tab are skipped.
        assert_eq!(go_base64(b"AB=="), Some(vec![0]));
        assert_eq!(go_base64(b"AA"), None);
        assert_eq!(go_base64(b"A A\r\n=\t="), Some(vec![0]));
        assert_eq!(go_base64(b"AA==AA=="), None);
        assert_eq!(go_base64(b""), Some(vec![]));
    }
}
