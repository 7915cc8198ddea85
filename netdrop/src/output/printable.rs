//! Names that reach a terminal. Task names, device names, namespace names and the like come
//! from the kernel or from whoever named the object, and may hold escape sequences that
//! would move the cursor, rewrite earlier lines or retitle the terminal. Text output shows
//! them with such characters escaped; JSON escapes them by its own rules.

use std::borrow::Cow;

/// `s` with control characters (C0, DEL, C1) and bidirectional or invisible formatting
/// characters written as `\xNN` / `\u{NNNN}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert!(matches!(printable("eth0"), Cow::Borrowed("eth0")));
        assert_eq!(printable("a\u{1b}]0;pwned\u{7}b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(printable("x\ny\r\t"), "x\\x0ay\\x0d\\x09");
        assert_eq!(printable("\u{7f}\u{9b}"), "\\x7f\\x9b");
        assert_eq!(printable("ab\u{202e}cd"), "ab\\u{202e}cd");
        assert_eq!(printable("ünïcode ok"), "ünïcode ok");
    }
}
