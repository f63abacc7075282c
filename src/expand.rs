//! Variable expansion in a bundle file's values, from bundle-init's own environment, when
//! the file is read (at start and at each reload):
//!
//! - `${NAME}`: the variable's value; unset, it is an error (set but empty is empty);
//! - `${NAME:-DEFAULT}`: DEFAULT when the variable is unset or empty;
//! - `${NAME:?MESSAGE}`: an error saying MESSAGE when the variable is unset or empty;
//! - `$$`: one `$`.
//!
//! A `$` followed by anything else is kept as it is, so files written before expansion
//! existed (`run = sh -c 'echo $HOME'`) keep their meaning. DEFAULT and MESSAGE are
//! literal text up to the first `}`: no expansion inside them.

use std::fmt;

/// Why a value could not be expanded: the message after `PATH:LINE: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` of a variable that is not set.
    Unset(String),
    /// `${NAME:?MESSAGE}` of a variable that is unset or empty.
    Required { name: String, message: String },
    /// The variable is set, but not to UTF-8 text: a bundle file is UTF-8.
    NotUnicode(String),
    /// `${` without its `}`.
    Unclosed,
    /// `${...}` that is none of the three forms (the text between the braces).
    BadReference(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "variable {name} is not set (${{{name}:-DEFAULT}} gives a default)"
            ),
            ExpandError::Required { name, message } => {
                write!(f, "variable {name} is not set: {message}")
            }
            ExpandError::NotUnicode(name) => write!(f, "variable {name} is not valid UTF-8"),
            ExpandError::Unclosed => f.write_str("\"${\" has no closing } (write $$ for a $)"),
            ExpandError::BadReference(text) => write!(
                f,
                "bad variable reference \"${{{text}}}\" (expected ${{NAME}}, ${{NAME:-DEFAULT}} or ${{NAME:?MESSAGE}})"
            ),
        }
    }
}

impl std::error::Error for ExpandError {}

/// What a variable is in the environment expansion reads.
pub enum Lookup {
    Set(String),
    Unset,
    NotUnicode,
}

/// bundle-init's own environment.
pub fn process_environment(name: &str) -> Lookup {
    match std::env::var(name) {
        Ok(value) => Lookup::Set(value),
        Err(std::env::VarError::NotPresent) => Lookup::Unset,
        Err(std::env::VarError::NotUnicode(_)) => Lookup::NotUnicode,
    }
}

/// `text` with every reference replaced. Borrows nothing from `lookup` past the call.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Lookup) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}').ok_or(ExpandError::Unclosed)?;
            out.push_str(&reference(&inner[..close], lookup)?);
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${...}`, given the text between its braces.
fn reference(inner: &str, lookup: &dyn Fn(&str) -> Lookup) -> Result<String, ExpandError> {
    let bad = || ExpandError::BadReference(inner.to_string());
    let (name, form) = match inner.find(':') {
        Some(at) => (&inner[..at], Some(&inner[at + 1..])),
        None => (inner, None),
    };
    if !is_variable_name(name) {
        return Err(bad());
    }
    let value = match lookup(name) {
        Lookup::Set(value) => Some(value),
        Lookup::Unset => None,
        Lookup::NotUnicode => return Err(ExpandError::NotUnicode(name.to_string())),
    };
    let Some(form) = form else {
        return value.ok_or_else(|| ExpandError::Unset(name.to_string()));
    };
    let value = value.filter(|v| !v.is_empty());
    if let Some(default) = form.strip_prefix('-') {
        Ok(value.unwrap_or_else(|| default.to_string()))
    } else if let Some(message) = form.strip_prefix('?') {
        value.ok_or_else(|| ExpandError::Required {
            name: name.to_string(),
            message: message.to_string(),
        })
    } else {
        Err(bad())
    }
}

/// A shell variable's name: a letter or `_`, then letters, digits and `_`.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` written so that `expand` gives it back: a `$` that would start a reference or an
/// escape (followed by `{` or `$`) is doubled; any other `$` already stands for itself.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && matches!(chars.peek(), Some('{' | '$')) {
            out.push('$');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Lookup {
        match name {
            "PORT" => Lookup::Set("9000".into()),
            "EMPTY" => Lookup::Set(String::new()),
            "BYTES" => Lookup::NotUnicode,
            _ => Lookup::Unset,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, &env).unwrap()
    }

    fn error(text: &str) -> ExpandError {
        expand(text, &env).unwrap_err()
    }

    #[test]
    fn a_set_variable_is_replaced_and_a_default_only_fills_unset_or_empty() {
        assert_eq!(ok("app --port ${PORT}"), "app --port 9000");
        assert_eq!(ok("${PORT:-8080}"), "9000");
        assert_eq!(ok("${UNSET:-8080}"), "8080");
        assert_eq!(ok("${EMPTY:-8080}"), "8080");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${UNSET:-}"), "");
        assert_eq!(ok("a${PORT}b${PORT}"), "a9000b9000");
        assert_eq!(
            ok("${UNSET:-x:y-z $HOME}"),
            "x:y-z $HOME",
            "a default is literal"
        );
        assert_eq!(ok("${PORT:?needed}"), "9000");
    }

    /// Files written before expansion keep their meaning: only `${` and `$$` are special.
    #[test]
    fn a_dollar_not_followed_by_a_brace_or_a_dollar_stays_literal() {
        assert_eq!(ok("sh -c 'echo $HOME $1 $'"), "sh -c 'echo $HOME $1 $'");
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("$${PORT}"), "${PORT}");
        assert_eq!(ok("$$$"), "$$");
        assert_eq!(ok("no dollar"), "no dollar");
    }

    #[test]
    fn an_unset_variable_a_required_one_and_bad_references_are_errors() {
        assert_eq!(error("${DB_URL}"), ExpandError::Unset("DB_URL".into()));
        assert_eq!(
            error("${DB_URL}").to_string(),
            "variable DB_URL is not set (${DB_URL:-DEFAULT} gives a default)"
        );
        assert_eq!(
            error("${EMPTY:?give the database}").to_string(),
            "variable EMPTY is not set: give the database"
        );
        assert_eq!(error("${BYTES}"), ExpandError::NotUnicode("BYTES".into()));
        assert_eq!(error("${PORT"), ExpandError::Unclosed);
        for bad in [
            "${}",
            "${1X}",
            "${A B}",
            "${PORT:+x}",
            "${PORT-x}",
            "${:-x}",
        ] {
            let inner = &bad[2..bad.len() - 1];
            assert_eq!(error(bad), ExpandError::BadReference(inner.into()), "{bad}");
        }
    }

    #[test]
    fn an_escaped_text_expands_back_to_itself() {
        for text in ["${X}", "$$", "$", "a $HOME b", "$${", "${A:-$}", "$$$"] {
            assert_eq!(ok(&escape(text)), text, "{text} as {}", escape(text));
        }
        assert_eq!(escape("echo $HOME"), "echo $HOME", "kept as written");
    }
}
