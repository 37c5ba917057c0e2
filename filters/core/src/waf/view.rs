//! One inspected value as the detectors read it, decoded once: the raw text, its URL-decoded
//! and normalised views, which ASCII bytes the normalised view holds, and the derived views
//! (shell folding, whitespace squeezed) built on first use and shared by every rule.
//!
//! The byte set is what makes the substring rules cheap: a needle can only occur in a view
//! derived from `norm` by deleting characters if every byte of the needle is in `norm`, so
//! [`View::any_of`] skips (with one mask test each) the needles that cannot match and most
//! values never reach a substring search at all. The needle masks are computed at compile
//! time ([`needles!`]).

use std::borrow::Cow;
use std::cell::OnceCell;

use super::decode;
use super::request::Location;

/// A set of ASCII bytes (bytes ≥ 0x80 are not tracked: a needle holding one is never
/// skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSet(u128);

impl ByteSet {
    /// The ASCII bytes of `s`.
    pub const fn of(s: &str) -> Self {
        let b = s.as_bytes();
        let mut mask = 0u128;
        let mut i = 0;
        while i < b.len() {
            if b[i] < 128 {
                mask |= 1u128 << b[i];
            }
            i += 1;
        }
        ByteSet(mask)
    }

    /// This set and `byte`.
    pub const fn with(self, byte: u8) -> Self {
        if byte < 128 {
            ByteSet(self.0 | 1u128 << byte)
        } else {
            self
        }
    }

    pub const fn has(self, byte: u8) -> bool {
        byte < 128 && self.0 & (1u128 << byte) != 0
    }

    /// Whether every byte of `needle` is in this set.
    pub const fn covers(self, needle: ByteSet) -> bool {
        needle.0 & !self.0 == 0
    }
}

/// A needle and its bytes.
pub type Needle = (&'static str, ByteSet);

/// A `&'static [Needle]` whose byte sets are computed at compile time.
macro_rules! needles {
    ($($needle:expr),* $(,)?) => {
        {
            const LIST: &[$crate::waf::view::Needle] =
                &[$(($needle, $crate::waf::view::ByteSet::of($needle))),*];
            LIST
        }
    };
}
pub(crate) use needles;

/// Whether a needle whose bytes are all in `present` occurs in `haystack`.
pub fn any_of(haystack: &str, present: ByteSet, needles: &[Needle]) -> bool {
    needles
        .iter()
        .any(|(needle, bytes)| present.covers(*bytes) && haystack.contains(needle))
}

/// Whether some needle's bytes are all in `present` (its view is worth building).
pub fn possible(present: ByteSet, needles: &[Needle]) -> bool {
    needles.iter().any(|(_, bytes)| present.covers(*bytes))
}

/// One target as the detectors see it.
pub struct View<'a> {
    pub location: Location,
    /// `header:user-agent`, `cookie:sid`, an argument name, `path`.
    pub name: &'a str,
    pub raw: &'a str,
    /// Percent-decoded until stable (control characters kept).
    pub url: &'a str,
    /// Every decoding layer, lower case.
    pub norm: &'a str,
    /// The ASCII bytes of `norm`.
    pub present: ByteSet,
    shell: OnceCell<Cow<'a, str>>,
    squeezed: OnceCell<Cow<'a, str>>,
}

impl<'a> View<'a> {
    pub fn new(
        location: Location,
        name: &'a str,
        raw: &'a str,
        url: &'a str,
        norm: &'a str,
    ) -> Self {
        Self {
            location,
            name,
            raw,
            url,
            norm,
            present: ByteSet::of(norm),
            shell: OnceCell::new(),
            squeezed: OnceCell::new(),
        }
    }

    /// `norm` as the shell reads it (quotes, backslashes and `$IFS` folded).
    pub fn shell(&self) -> &str {
        self.shell.get_or_init(|| decode::shell_fold(self.norm))
    }

    /// `norm` without any whitespace.
    pub fn squeezed(&self) -> &str {
        self.squeezed.get_or_init(|| {
            if self.norm.chars().any(char::is_whitespace) {
                Cow::Owned(self.norm.replace(char::is_whitespace, ""))
            } else {
                Cow::Borrowed(self.norm)
            }
        })
    }

    /// The needles found in `norm` with its whitespace squeezed out.
    pub fn squeezed_any_of(&self, needles: &[Needle]) -> bool {
        possible(self.present, needles) && any_of(self.squeezed(), self.present, needles)
    }
}
