//! Just enough JSON to write documents: strings escaped as RFC 8259 requires, and objects
//! and arrays built field by field. Nothing here parses JSON.

use std::fmt::Write as _;

/// Appends `text` as a JSON string: quotes and backslashes escaped, control characters
/// (U+0000 to U+001F) as `\n`, `\t`... or `\u00XX`. Everything else, non-ASCII included,
/// is valid in a JSON string as it is (the output is UTF-8, as JSON text must be).
pub(crate) fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object being written: `{`, then `"key":value` pairs separated by commas, then `}` at
/// [`Object::end`].
pub(crate) struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn begin(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    /// Writes the key; the caller writes the value right after it.
    fn key(&mut self, key: &str) -> &mut String {
        if !std::mem::replace(&mut self.empty, false) {
            self.out.push(',');
        }
        push_string(self.out, key);
        self.out.push(':');
        self.out
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        push_string(out, value);
        self
    }

    pub(crate) fn number(&mut self, key: &str, value: impl Into<i64>) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "{}", value.into());
        self
    }

    pub(crate) fn boolean(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).push_str("null");
        self
    }

    /// A value the caller writes itself (an object or an array), in `write`.
    pub(crate) fn value(&mut self, key: &str, write: impl FnOnce(&mut String)) -> &mut Self {
        write(self.key(key));
        self
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

/// Appends `[item,item...]`, each item written by `write`.
pub(crate) fn push_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, text);
        out
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        assert_eq!(string(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        assert_eq!(string("a\nb\r\tc"), r#""a\nb\r\tc""#);
        assert_eq!(string("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(string("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        // DEL is no control character to JSON.
        assert_eq!(string("\u{7f}"), "\"\u{7f}\"");
    }

    #[test]
    fn non_ascii_text_is_kept_as_utf8() {
        assert_eq!(string("café ☕ 𝄞"), "\"café ☕ 𝄞\"");
    }

    #[test]
    fn every_escaped_string_reads_back_as_itself() {
        let every_control: String = (0u32..0x20).filter_map(char::from_u32).collect();
        for text in ["", "plain", "\"\\/", &every_control, "é\u{2028}\u{fffd}"] {
            let parsed: String = serde_json::from_str(&string(text)).unwrap();
            assert_eq!(parsed, text);
        }
    }

    #[test]
    fn objects_and_arrays_are_separated_by_commas() {
        let mut out = String::new();
        let mut o = Object::begin(&mut out);
        o.string("a", "x")
            .number("b", -3)
            .boolean("c", true)
            .null("d");
        o.value("e", |out| {
            push_array(out, [1, 2], |out, n| out.push_str(&n.to_string()))
        });
        o.value("f", |out| push_array(out, Vec::<u8>::new(), |_, _| {}));
        o.end();
        assert_eq!(
            out,
            r#"{"a":"x","b":-3,"c":true,"d":null,"e":[1,2],"f":[]}"#
        );
    }
}
