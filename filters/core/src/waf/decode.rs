//! Decoding layers, each linear in its input and bounded in passes: URL (`%XX`, `%uXXXX`,
//! repeated for double encoding), HTML entities, JavaScript/CSS escapes (`\uXXXX`, `\xHH`),
//! case, and the foldings the detectors work on (SQL comments, shell quoting, whitespace).
//! A layer with nothing to decode borrows its input (most values are plain text), so a
//! value costs an allocation only for the layers that change it.

use std::borrow::Cow;

/// URL decoding passes at most (double and triple encoding).
const URL_PASSES: usize = 3;

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

fn hex_at(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(n)?)?;
    slice
        .iter()
        .try_fold(0u32, |acc, b| Some(acc * 16 + hex(*b)?))
}

/// One pass of percent-decoding (`+` stays: the query parser turns it into a space).
/// Invalid escapes stay as written; `%uXXXX` (IIS) becomes its character.
pub fn url_decode_once(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(v) = hex_at(bytes, i + 1, 2) {
                out.push(v as u8);
                i += 3;
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
                if let Some(c) = hex_at(bytes, i + 2, 4).and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    lossy(out)
}

/// Bytes as text: invalid UTF-8 (overlong forms such as `%c0%ae` included) becomes U+FFFD.
pub fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Repeated percent-decoding until nothing changes, at most 3 times.
pub fn url_decode_full(input: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(input);
    for _ in 0..URL_PASSES {
        if !current.contains('%') {
            break;
        }
        let next = url_decode_once(&current);
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

/// Whether `input` has a `%` that is not a valid escape.
pub fn has_invalid_percent(input: &str) -> bool {
    let bytes = input.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && hex_at(bytes, i + 1, 2).is_none()
            && !(matches!(bytes.get(i + 1), Some(b'u' | b'U')) && hex_at(bytes, i + 2, 4).is_some())
    })
}

const ENTITIES: [(&str, char); 14] = [
    ("lt", '<'),
    ("gt", '>'),
    ("amp", '&'),
    ("quot", '"'),
    ("apos", '\''),
    ("sol", '/'),
    ("bsol", '\\'),
    ("colon", ':'),
    ("lpar", '('),
    ("rpar", ')'),
    ("tab", '\t'),
    ("newline", '\n'),
    ("nbsp", ' '),
    ("semi", ';'),
];

/// HTML entities: named (a few that matter), decimal and hex, with or without the `;`
/// (browsers accept both).
pub fn html_decode(input: &str) -> Cow<'_, str> {
    if !input.contains('&') {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('&') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        match entity(after) {
            Some((c, used)) => {
                out.push(c);
                rest = after.get(used..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The entity at the start of `s` (after `&`): its character and the bytes it used.
fn entity(s: &str) -> Option<(char, usize)> {
    let bytes = s.as_bytes();
    let semi = |used: usize| usize::from(bytes.get(used) == Some(&b';'));
    if let Some(num) = s.strip_prefix('#') {
        let (radix, digits, skip) = match num.strip_prefix(['x', 'X']) {
            Some(h) => (16, h, 2),
            None => (10, num, 1),
        };
        let len = digits
            .bytes()
            .take(8)
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        let value = u32::from_str_radix(digits.get(..len)?, radix).ok()?;
        let c = char::from_u32(value).unwrap_or('\u{fffd}');
        let used = skip + len;
        return Some((c, used + semi(used)));
    }
    ENTITIES.iter().find_map(|(name, c)| {
        let head = bytes.get(..name.len())?;
        head.eq_ignore_ascii_case(name.as_bytes())
            .then(|| (*c, name.len() + semi(name.len())))
    })
}

/// JavaScript and CSS escapes: `\uXXXX`, `\u{X..}`, `\xHH`; other backslashes stay.
pub fn js_decode(input: &str) -> Cow<'_, str> {
    if !input.contains('\\') {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            let decoded = match bytes.get(i + 1) {
                Some(b'u') => hex_at(bytes, i + 2, 4).map(|v| (v, 6)),
                Some(b'x') => hex_at(bytes, i + 2, 2).map(|v| (v, 4)),
                _ => None,
            };
            if let Some((v, used)) = decoded {
                let c = char::from_u32(v).unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += used;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(lossy(out))
}

/// Full-width ASCII forms (`＜script＞`) to ASCII, NUL removed, lower case.
pub fn fold_case_and_width(input: &str) -> Cow<'_, str> {
    if input
        .bytes()
        .all(|b| b.is_ascii() && b != 0 && !b.is_ascii_uppercase())
    {
        return Cow::Borrowed(input);
    }
    Cow::Owned(
        input
            .chars()
            .filter(|c| *c != '\0')
            .map(|c| match c {
                '\u{ff01}'..='\u{ff5e}' => {
                    char::from_u32(u32::from(c) - 0xff01 + 0x21).unwrap_or(c)
                }
                _ => c,
            })
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

/// The view every detector starts from: URL (repeated), HTML entities, JS escapes, then
/// entities again (an escaped entity), width and case.
pub fn normalise(input: &str) -> String {
    normalise_decoded(&url_decode_full(input)).into_owned()
}

/// [`normalise`] of a value already URL-decoded ([`url_decode_full`]): the engine decodes
/// each value's URL layer once and reads both views.
pub fn normalise_decoded(url: &str) -> Cow<'_, str> {
    let entities = html_decode(url);
    let js = js_decode(&entities);
    let again = html_decode(&js);
    let lowered = fold_case_and_width(&again);
    let unchanged = [&entities, &js, &again, &lowered]
        .iter()
        .all(|layer| matches!(layer, Cow::Borrowed(_)));
    if unchanged {
        Cow::Borrowed(url)
    } else {
        Cow::Owned(lowered.into_owned())
    }
}

/// Runs of whitespace (and vertical tabs, form feeds, NBSP) to one space.
pub fn fold_whitespace(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut space = false;
    for c in input.chars() {
        if c.is_whitespace() || c == '\u{0b}' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

/// The shell's view: quotes and backslashes inside words removed (`c'a't`, `w\hoami`),
/// `$IFS` / `${IFS}` as spaces, `$@` dropped, tabs as spaces (newlines stay: they separate
/// commands).
pub fn shell_fold(normalised: &str) -> Cow<'_, str> {
    let folded = |c: u8| matches!(c, b'\'' | b'"' | b'\\' | b'^' | b'\t' | b'$');
    if !normalised.bytes().any(folded) {
        return Cow::Borrowed(normalised);
    }
    let replaced;
    let s = if normalised.contains('$') {
        replaced = normalised
            .replace("${ifs}", " ")
            .replace("$ifs", " ")
            .replace("$@", "")
            .replace("$*", "");
        &replaced
    } else {
        normalised
    };
    Cow::Owned(
        s.chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\' | '^'))
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect(),
    )
}

/// Where `needle` first occurs in `b` at or after `from`.
pub fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}
