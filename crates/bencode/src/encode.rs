//! The canonical encoder.

use crate::value::Value;

/// Encodes `value` canonically. Dictionaries are always sorted ([`crate::Dict`] keeps them so),
/// so `decode(&encode(v)) == Ok(v)` for every value.
pub fn encode(value: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

impl Value<'_> {
    /// Appends the canonical encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_into(self, out);
    }
}

fn encode_into(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Int(n) => {
            out.push(b'i');
            push_decimal(out, n.unsigned_abs(), *n < 0);
            out.push(b'e');
        }
        Value::Bytes(bytes) => push_bytes(out, bytes),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(dict) => {
            out.push(b'd');
            for (key, value) in dict.iter() {
                push_bytes(out, key);
                encode_into(value, out);
            }
            out.push(b'e');
        }
    }
}

/// Appends the encoding of the byte string `bytes` to `out`: for callers that splice raw,
/// already-encoded values (a torrent's original info bytes) into a dictionary they write.
pub fn encode_bytes_into(bytes: &[u8], out: &mut Vec<u8>) {
    push_bytes(out, bytes);
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_decimal(out, bytes.len() as u64, false);
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64, negative: bool) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}
