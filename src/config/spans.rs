//! Where a setting is in the config file: the one way config errors find the line they
//! point at, from the TOML parser's own spans (a text search would find a comment, or the
//! same key name in another section).

use toml_edit::{ImDocument, Item, Value};

/// Byte offset of the dotted key `key` (`dumps.keep`, `mysqld.env.LD_PRELOAD`,
/// `profiles.leak.inherits`) in `text`; where the key is absent (a default), the nearest
/// enclosing table that is there; None when the text does not parse or nothing matches.
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut found = None;
    let mut item = doc.as_item();
    for part in key.split('.') {
        let next = match item {
            Item::Table(t) => t.get_key_value(part),
            Item::Value(Value::InlineTable(t)) => t.get_key_value(part),
            _ => None,
        };
        let Some((k, v)) = next else {
            break;
        };
        found = k.span().map(|s| s.start).or(found);
        item = v;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::locate;

    const TEXT: &str = "# keep = 1 in a comment\nprofile = \"leak\"\n[dumps]\nkeep = 3\n\
                        [supervise]\nkeep_alive = 1\n[mysqld]\nenv = { LD_PRELOAD = \"x\" }\n";

    fn line(offset: Option<usize>) -> Option<usize> {
        offset.map(|o| TEXT[..o].matches('\n').count() + 1)
    }

    #[test]
    fn keys_are_found_in_their_section_not_in_comments() {
        assert_eq!(line(locate(TEXT, "dumps.keep")), Some(4));
        assert_eq!(line(locate(TEXT, "profile")), Some(2));
        assert_eq!(line(locate(TEXT, "mysqld.env.LD_PRELOAD")), Some(8));
        // Absent: the section it would be in.
        assert_eq!(line(locate(TEXT, "dumps.max_age_h")), Some(3));
        assert_eq!(locate(TEXT, "http.listen"), None);
        assert_eq!(locate("not [ toml", "dumps.keep"), None);
    }
}
