//! A small JSON writer: the event lines are built by appending to one byte buffer.

use std::fmt::Write as _;

/// Append `s` as a JSON string (RFC 8259 escaping: quote, backslash, control characters).
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => {
                let mut s = String::new();
                let _ = write!(s, "\\u{:04x}", b);
                out.extend_from_slice(s.as_bytes());
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Longer texts from the wire (names, identities) are cut here, with a marker saying so.
pub const MAX_TEXT: usize = 256;

/// Bytes decoded as Latin-1 (every byte one character), as Python's ``decode("latin-1")``,
/// at most `MAX_TEXT` of them.
pub fn latin1(bytes: &[u8]) -> String {
    let mut text: String = bytes.iter().take(MAX_TEXT).map(|&b| b as char).collect();
    if bytes.len() > MAX_TEXT {
        text.push_str(&format!("…[{} more bytes]", bytes.len() - MAX_TEXT));
    }
    text
}

pub fn uint(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub fn int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
        uint(out, v.unsigned_abs());
    } else {
        uint(out, v as u64);
    }
}

/// A big-endian unsigned integer of any length, in decimal (COTP parameters may be long).
pub fn big_uint(out: &mut Vec<u8>, be: &[u8]) {
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    if be.len() - first <= 8 {
        // the usual TSAP or parameter: fits a machine word
        return uint(
            out,
            be[first..].iter().fold(0, |n, &b| n << 8 | u64::from(b)),
        );
    }
    let mut digits: Vec<u8> = Vec::new();
    let mut num: Vec<u8> = be[first..].to_vec();
    if num.is_empty() {
        out.push(b'0');
        return;
    }
    while !num.is_empty() {
        let mut rem: u32 = 0;
        let mut next = Vec::with_capacity(num.len());
        for &b in &num {
            let cur = rem * 256 + b as u32;
            let q = cur / 10;
            rem = cur % 10;
            if !(next.is_empty() && q == 0) {
                next.push(q as u8);
            }
        }
        digits.push(b'0' + rem as u8);
        num = next;
    }
    digits.reverse();
    out.extend_from_slice(&digits);
}

/// `,"key":` (or `"key":` right after an opening brace).
pub fn key(out: &mut Vec<u8>, k: &str) {
    if let Some(&last) = out.last() {
        if last != b'{' && last != b'[' {
            out.push(b',');
        }
    }
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

pub fn field_u(out: &mut Vec<u8>, k: &str, v: u64) {
    key(out, k);
    uint(out, v);
}

pub fn field_s(out: &mut Vec<u8>, k: &str, v: &str) {
    key(out, k);
    string(out, v);
}

pub fn field_b(out: &mut Vec<u8>, k: &str, v: bool) {
    key(out, k);
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A number field written only when the value is present.
pub fn field_some_u(out: &mut Vec<u8>, k: &str, v: Option<u64>) {
    if let Some(v) = v {
        field_u(out, k, v);
    }
}

pub fn field_opt_u(out: &mut Vec<u8>, k: &str, v: Option<u64>) {
    key(out, k);
    match v {
        Some(v) => uint(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A list field, each element written by `each`.
pub fn list<I: IntoIterator>(
    out: &mut Vec<u8>,
    k: &str,
    items: I,
    mut each: impl FnMut(&mut Vec<u8>, I::Item),
) {
    key(out, k);
    out.push(b'[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, x);
    }
    out.push(b']');
}

/// A list of strings (anomaly names).
pub fn str_list(out: &mut Vec<u8>, k: &str, items: &[&str]) {
    list(out, k, items, |out, s| string(out, s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_quotes() {
        let mut v = Vec::new();
        string(&mut v, "a\"b\\c\n\u{1}é");
        assert_eq!(String::from_utf8(v).unwrap(), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn big_integers_in_decimal() {
        let mut v = Vec::new();
        big_uint(
            &mut v,
            &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        );
        assert_eq!(String::from_utf8(v).unwrap(), "18446744073709551616");
        let mut v = Vec::new();
        big_uint(&mut v, &[0x02, 0x01]);
        assert_eq!(String::from_utf8(v).unwrap(), "513");
    }

    proptest::proptest! {
        /// Any length, leading zeros or not: the decimal of the number.
        #[test]
        fn big_uint_is_the_decimal_of_any_bytes(be in proptest::collection::vec(0u8..=255, 0..20)) {
            let mut v = Vec::new();
            big_uint(&mut v, &be);
            let significant: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
            if significant.len() <= 16 {
                let n = significant.iter().fold(0u128, |n, &b| n << 8 | u128::from(b));
                proptest::prop_assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
            }
        }
    }
}
