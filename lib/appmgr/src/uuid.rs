//! App instance UUIDs: the tables are keyed by the canonical lowercase
//! form, so a config's UUID is checked and folded to it before use.

use alloc::string::String;

/// The canonical form of `text` (`8-4-4-4-12` hex digits, lowercase), or
/// `None` when it is not a UUID.
pub fn canonical(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    well_formed.then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn only_the_dashed_hex_form_is_a_uuid() {
        assert_eq!(
            canonical("6BA7B810-9dad-11d1-80b4-00c04fd430c8").as_deref(),
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
        );
        for bad in [
            "",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8a",
            "6ba7b8109dad-11d1-80b4-00c04fd430c8a",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "6ba7b810-9dad-11d1-80b4-00c04fd430é",
        ] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }
}
