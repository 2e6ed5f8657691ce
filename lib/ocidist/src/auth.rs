//! Registry authentication: the `WWW-Authenticate` challenge of a 401, and
//! the token service's answer.
//!
//! A registry answers an unauthenticated request with `401` and either
//! `Bearer realm="<token URL>",service="...",scope="..."` (ask the realm
//! for a token, with basic credentials if we have them, then send
//! `Authorization: Bearer <token>`) or `Basic realm="..."` (send the
//! credentials directly).

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

/// Longest token accepted.
const MAX_TOKEN: usize = 16 * 1024;

/// A challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm`.
    Bearer {
        /// The token service's URL.
        realm: String,
        /// `service=` to pass on.
        service: Option<String>,
        /// `scope=` to pass on.
        scope: Option<String>,
    },
    /// Send basic credentials.
    Basic,
}

/// Parses one challenge: a scheme and comma-separated `name=value`
/// parameters (values tokens or quoted strings). `None` when it is not a
/// Bearer or Basic challenge we understand.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm").filter(|r| !r.is_empty())?,
        service: get("service"),
        scope: get("scope"),
    })
}

fn parse_params(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    // Each pass consumes a parameter or returns: bounded by the length.
    loop {
        s = s.trim_start_matches([' ', ',']);
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let name = s.get(..eq)?.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        s = s.get(eq + 1..)?.trim_start();
        let value;
        if let Some(quoted) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => v.push(chars.next()?.1),
                    (i, '"') => break i,
                    (_, c) if c.is_control() => return None,
                    (_, c) => v.push(c),
                }
            };
            value = v;
            s = quoted.get(end + 1..)?;
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = String::from(s.get(..end)?.trim());
            s = s.get(end..)?;
        }
        out.push((String::from(name), value));
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The token from a token service's JSON answer (`token`, or OAuth's
/// `access_token`), if it is one we can put in a header.
pub(crate) fn token_from(body: &[u8]) -> Option<String> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token)?;
    let ok = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(token)
}

/// Percent-encodes a query value (unreserved characters kept).
pub(crate) fn query_escape(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        let c = parse_challenge(r#"bearer realm=http://h:1/t, scope="x\"y""#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://h:1/t".into(),
                service: None,
                scope: Some("x\"y".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="registry""#),
            Some(Challenge::Basic)
        );
        for bad in [
            "",
            "Digest realm=x",
            "Bearer",
            "Bearer service=x",
            r#"Bearer realm="unterminated"#,
            "Bearer realm",
            "Bearer =x",
            "Bearer realm=\"a\u{1}\"",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_and_escaping() {
        assert_eq!(
            token_from(br#"{"token":"abc.def","expires_in":60}"#).as_deref(),
            Some("abc.def")
        );
        assert_eq!(
            token_from(br#"{"access_token":"xyz"}"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(token_from(br#"{"token":"a b"}"#), None);
        assert_eq!(token_from(br#"{"token":""}"#), None);
        assert_eq!(token_from(b"not json"), None);
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
