//! Writing JSON the way Go's `encoding/json` does, since apps read EVE's
//! metadata server's answers: objects with keys in sorted order, and
//! strings with `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u00XX`.

use alloc::string::String;
use core::fmt::Write;

pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value of an object being written.
pub(crate) enum Value<'a> {
    Str(&'a str),
    Int(u64),
    /// Already JSON.
    Raw(&'a str),
}

/// An object of `fields`, which the caller lists in sorted key order.
pub(crate) fn object(fields: &[(&str, Value<'_>)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, key);
        out.push(':');
        match value {
            Value::Str(s) => string(&mut out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Raw(raw) => out.push_str(raw),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c<d>&\u{1}\u{2028}é");
        assert_eq!(out, r#""a\"b\\c\u003cd\u003e\u0026\u0001\u2028é""#);
        assert_eq!(
            object(&[
                ("a", Value::Int(0)),
                ("b", Value::Str("x")),
                ("c", Value::Raw("[]"))
            ]),
            r#"{"a":0,"b":"x","c":[]}"#
        );
    }
}
