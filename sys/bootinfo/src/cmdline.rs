//! The kernel command line our services are configured by.
//!
//! The grammar is deliberately smaller than Linux's: whitespace-separated
//! words, each either a bare `flag` or `key=value`, where a value may be
//! wrapped in double quotes to contain whitespace (`name="a b"`). There are no
//! escapes and quotes are only special at the start of a value, so every
//! parameter maps to one contiguous slice of the input and no allocation or
//! copying is ever needed.
//!
//! Whitespace means ASCII whitespace (space, tab, newline, carriage return,
//! form feed), matching what bootloaders and VMMs insert; other Unicode is
//! ordinary text. Because every delimiter is ASCII, splitting never lands
//! inside a multi-byte character.

use core::fmt;

/// Why one word of the command line was rejected. Offsets are byte offsets
/// into the command line, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineError {
    /// A quoted value has no closing quote; it swallows the rest of the line.
    UnterminatedQuote {
        /// Offset of the opening quote.
        offset: usize,
    },
    /// A word starts with `=`, so it has a value but no key.
    EmptyKey {
        /// Offset of the word.
        offset: usize,
    },
    /// A quote appears in a key; keys cannot be quoted.
    QuoteInKey {
        /// Offset of the quote.
        offset: usize,
    },
    /// Text follows a closing quote without whitespace (`a="b"c`).
    TextAfterQuote {
        /// Offset of the first byte after the closing quote.
        offset: usize,
    },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnterminatedQuote { offset } => {
                write!(f, "command line: unterminated quote at byte {offset}")
            }
            Self::EmptyKey { offset } => {
                write!(f, "command line: empty key at byte {offset}")
            }
            Self::QuoteInKey { offset } => {
                write!(f, "command line: quote inside a key at byte {offset}")
            }
            Self::TextAfterQuote { offset } => {
                write!(f, "command line: text after closing quote at byte {offset}")
            }
        }
    }
}

impl core::error::Error for CmdlineError {}

/// One parameter: `key=value` gives `Some(value)` (quotes stripped, possibly
/// empty), a bare flag gives `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The text before `=`, or the whole word for a flag. Never empty.
    pub key: &'a str,
    /// The text after `=`, without surrounding quotes.
    pub value: Option<&'a str>,
}

/// A borrowed command line. Parsing is lazy and repeated on every query:
/// command lines are short and queried a handful of times at boot, so this is
/// cheaper than storing parsed parameters in a fixed-size table that could
/// overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Wraps a command line; never fails, errors surface per parameter.
    pub fn new(s: &'a str) -> Cmdline<'a> {
        Cmdline { text: s }
    }

    /// The raw text, for logging.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Every word in order. A malformed word yields an error and parsing
    /// resumes at the next whitespace, except after an unterminated quote,
    /// which ends the line.
    pub fn iter(&self) -> Params<'a> {
        Params {
            text: self.text,
            pos: 0,
        }
    }

    /// The value of `key`. The last occurrence wins, so a later parameter
    /// (typically appended by the operator) overrides a built-in default;
    /// if that occurrence is a bare flag there is no value. Malformed words
    /// are skipped so one typo does not hide the rest of the configuration.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.last(key).and_then(|p| p.value)
    }

    /// Whether `key` is set as a bare flag, with the same last-occurrence-wins
    /// rule as [`Cmdline::get`]: `quiet quiet=0` is not the flag.
    pub fn has_flag(&self, key: &str) -> bool {
        self.last(key).is_some_and(|p| p.value.is_none())
    }

    fn last(&self, key: &str) -> Option<Param<'a>> {
        self.iter().flatten().filter(|p| p.key == key).last()
    }
}

impl<'a> IntoIterator for &Cmdline<'a> {
    type Item = Result<Param<'a>, CmdlineError>;
    type IntoIter = Params<'a>;

    fn into_iter(self) -> Params<'a> {
        self.iter()
    }
}

/// Iterator over the words of a [`Cmdline`]. Each call consumes at least one
/// byte, so it ends after at most `len + 1` calls.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Params<'a> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.text.as_bytes().get(i).copied()
    }

    /// First index at or after `i` for which `stop` holds, or the end.
    fn find_from(&self, i: usize, stop: impl Fn(u8) -> bool) -> usize {
        let bytes = self.text.as_bytes();
        bytes
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| stop(b)))
            .map_or(bytes.len(), |n| i.saturating_add(n))
    }

    /// Slices at ASCII delimiters are always char boundaries, but `get` keeps
    /// that an argument rather than a potential panic.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    /// Skips the rest of a malformed word and reports `error`.
    fn skip_word(
        &mut self,
        from: usize,
        error: CmdlineError,
    ) -> Option<Result<Param<'a>, CmdlineError>> {
        self.pos = self.find_from(from, |b| b.is_ascii_whitespace());
        Some(Err(error))
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, CmdlineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let len = self.text.len();
        let start = self.find_from(self.pos, |b| !b.is_ascii_whitespace());
        if start >= len {
            self.pos = len;
            return None;
        }
        let key_end = self.find_from(start, |b| b.is_ascii_whitespace() || b == b'=' || b == b'"');
        let key = self.slice(start, key_end);
        match self.byte(key_end) {
            Some(b'"') => self.skip_word(key_end, CmdlineError::QuoteInKey { offset: key_end }),
            Some(b'=') => {
                let value_start = key_end.saturating_add(1);
                let (value, end) = if self.byte(value_start) == Some(b'"') {
                    let open = value_start;
                    let inner = open.saturating_add(1);
                    let close = self.find_from(inner, |b| b == b'"');
                    if close >= len {
                        self.pos = len;
                        return Some(Err(CmdlineError::UnterminatedQuote { offset: open }));
                    }
                    let after = close.saturating_add(1);
                    if self.byte(after).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return self
                            .skip_word(after, CmdlineError::TextAfterQuote { offset: after });
                    }
                    (self.slice(inner, close), after)
                } else {
                    let end = self.find_from(value_start, |b| b.is_ascii_whitespace());
                    (self.slice(value_start, end), end)
                };
                self.pos = end;
                if key.is_empty() {
                    return Some(Err(CmdlineError::EmptyKey { offset: start }));
                }
                Some(Ok(Param {
                    key,
                    value: Some(value),
                }))
            }
            _ => {
                self.pos = key_end;
                Some(Ok(Param { key, value: None }))
            }
        }
    }
}

impl core::iter::FusedIterator for Params<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn params(s: &str) -> Vec<Result<Param<'_>, CmdlineError>> {
        Cmdline::new(s).iter().collect()
    }

    fn kv<'a>(key: &'a str, value: &'a str) -> Result<Param<'a>, CmdlineError> {
        Ok(Param {
            key,
            value: Some(value),
        })
    }

    fn flag(key: &str) -> Result<Param<'_>, CmdlineError> {
        Ok(Param { key, value: None })
    }

    #[test]
    fn normal() {
        let c = Cmdline::new("service=selftest log=debug ip=10.0.2.15/24 gw=10.0.2.2");
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [
                kv("service", "selftest"),
                kv("log", "debug"),
                kv("ip", "10.0.2.15/24"),
                kv("gw", "10.0.2.2"),
            ]
        );
        assert_eq!(c.get("service"), Some("selftest"));
        assert_eq!(c.get("ip"), Some("10.0.2.15/24"));
        assert_eq!(c.get("gw"), Some("10.0.2.2"));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.get("serv"), None);
        assert!(!c.has_flag("log"));
        assert_eq!(c.as_str().len(), 54);
    }

    #[test]
    fn quoted() {
        let c = Cmdline::new(r#"name="a b" empty="" eq="x=y" log=debug"#);
        assert_eq!(
            params(c.as_str()),
            [
                kv("name", "a b"),
                kv("empty", ""),
                kv("eq", "x=y"),
                kv("log", "debug")
            ]
        );
        assert_eq!(c.get("name"), Some("a b"));
        // Quotes are only special at the start of a value.
        assert_eq!(params(r#"a=b"c"#), [kv("a", "b\"c")]);
        assert_eq!(params("k=\"tab\there\""), [kv("k", "tab\there")]);
    }

    #[test]
    fn repeated_keys_last_wins() {
        let c = Cmdline::new("log=info service=a log=debug");
        assert_eq!(c.get("log"), Some("debug"));
        let c = Cmdline::new("log=info log");
        assert_eq!(c.get("log"), None);
        assert!(c.has_flag("log"));
        let c = Cmdline::new("quiet quiet=0");
        assert!(!c.has_flag("quiet"));
        assert_eq!(c.get("quiet"), Some("0"));
    }

    #[test]
    fn flags() {
        let c = Cmdline::new("quiet service=x nosmp");
        assert_eq!(
            params(c.as_str()),
            [flag("quiet"), kv("service", "x"), flag("nosmp")]
        );
        assert!(c.has_flag("quiet"));
        assert!(c.has_flag("nosmp"));
        assert!(!c.has_flag("service"));
        assert!(!c.has_flag("qui"));
        assert_eq!(params("k="), [kv("k", "")]);
        assert!(!Cmdline::new("k=").has_flag("k"));
    }

    #[test]
    fn unterminated_quote() {
        let c = Cmdline::new(r#"log=debug name="a b service=x"#);
        assert_eq!(
            params(c.as_str()),
            [
                kv("log", "debug"),
                Err(CmdlineError::UnterminatedQuote { offset: 15 })
            ]
        );
        assert_eq!(c.get("log"), Some("debug"));
        assert_eq!(c.get("service"), None);
        assert_eq!(
            params("a=\""),
            [Err(CmdlineError::UnterminatedQuote { offset: 2 })]
        );
    }

    #[test]
    fn malformed_words_are_skipped() {
        let c = Cmdline::new(r#"=x log=debug "q"=1 a="b"c ="x y" gw=1"#);
        assert_eq!(
            params(c.as_str()),
            [
                Err(CmdlineError::EmptyKey { offset: 0 }),
                kv("log", "debug"),
                Err(CmdlineError::QuoteInKey { offset: 13 }),
                Err(CmdlineError::TextAfterQuote { offset: 24 }),
                Err(CmdlineError::EmptyKey { offset: 26 }),
                kv("gw", "1"),
            ]
        );
        assert_eq!(c.get("log"), Some("debug"));
        assert_eq!(c.get("gw"), Some("1"));
        assert_eq!(c.get(""), None);
        assert_eq!(params("="), [Err(CmdlineError::EmptyKey { offset: 0 })]);
    }

    #[test]
    fn empty() {
        assert!(params("").is_empty());
        assert!(params(" \t\n ").is_empty());
        assert_eq!(Cmdline::new("").get("x"), None);
        assert!(!Cmdline::new("").has_flag(""));
    }

    #[test]
    fn weird_whitespace() {
        let c = Cmdline::new("\t service=selftest\n\nlog=debug\r\n\x0cquiet  \t");
        assert_eq!(
            params(c.as_str()),
            [kv("service", "selftest"), kv("log", "debug"), flag("quiet")]
        );
    }

    #[test]
    fn non_ascii() {
        let c = Cmdline::new("nom=café ключ=значение \u{a0}x=\"π ≈ 3\" 🦀");
        assert_eq!(
            params(c.as_str()),
            [
                kv("nom", "café"),
                kv("ключ", "значение"),
                // U+00A0 is not ASCII whitespace, so it belongs to the key.
                kv("\u{a0}x", "π ≈ 3"),
                flag("🦀"),
            ]
        );
        assert_eq!(c.get("ключ"), Some("значение"));
        assert!(c.has_flag("🦀"));
    }

    #[test]
    fn errors_display() {
        use std::string::ToString;
        for e in [
            CmdlineError::UnterminatedQuote { offset: 1 },
            CmdlineError::EmptyKey { offset: 2 },
            CmdlineError::QuoteInKey { offset: 3 },
            CmdlineError::TextAfterQuote { offset: 4 },
        ] {
            assert!(e.to_string().contains("command line"));
        }
    }

    #[test]
    fn random_inputs_terminate_without_panic() {
        let alphabet = [b'a', b'=', b'"', b' ', b'\t', b'\n', b'k', b'1'];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 24) as usize;
            let mut seed = rng;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.rotate_left(3) ^ 0x9e37;
                    alphabet[(seed % 8) as usize]
                })
                .collect();
            let s = std::str::from_utf8(&s).unwrap();
            let c = Cmdline::new(s);
            let n = c.iter().count();
            assert!(n <= s.len());
            for p in c.iter().flatten() {
                assert!(!p.key.is_empty());
                let _ = c.get(p.key);
            }
        }
    }
}
