//! Splitting text at an ASCII byte, with plain byte loops: the generic character
//! searchers of `str` cost many more instructions, and the guest runs where KVM
//! emulates every one of them.

/// `text` split at the first `delimiter` (an ASCII byte), as
/// `str::split_once` does, but with a plain byte loop.
///
/// # Panics
///
/// In debug builds, when `delimiter` is not ASCII (it could match inside a
/// character and split it).
pub fn cut(text: &str, delimiter: u8) -> Option<(&str, &str)> {
    // A non-ASCII byte could match inside a character and make the slicing
    // below panic.
    debug_assert!(delimiter.is_ascii(), "cut at a non-ASCII byte");
    let at = text.bytes().position(|b| b == delimiter)?;
    // `at` and `at + 1` are character boundaries: `delimiter` is ASCII.
    Some((&text[..at], &text[at + 1..]))
}

/// The pieces of `text` between `delimiter`s (an ASCII byte), as `str::split`
/// gives them (see [`cut`]).
pub fn pieces(text: &str, delimiter: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    core::iter::from_fn(move || {
        let text = rest?;
        match cut(text, delimiter) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_and_pieces_split_like_str() {
        for (text, delimiter) in [
            ("a=b=c", '='),
            ("=", '='),
            ("", '='),
            ("none", '='),
            ("10.0.0.1", '.'),
            ("1,,2,", ','),
            ("é:ü:", ':'),
        ] {
            assert_eq!(
                cut(text, delimiter as u8),
                text.split_once(delimiter),
                "{text:?}"
            );
            assert_eq!(
                pieces(text, delimiter as u8).collect::<Vec<_>>(),
                text.split(delimiter).collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "non-ASCII")]
    fn cut_refuses_a_non_ascii_delimiter() {
        // 0xa9 is the second byte of "é": cutting there would split the character.
        let _ = cut("é", 0xa9);
    }
}
