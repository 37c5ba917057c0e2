//! An independent, deliberately plain reference normalizer for the authz path, used to check
//! [`super::normalize`] on random paths (the unit-tier property test and the cargo-fuzz target
//! `authz_path`, which includes this file). Written from the spec in the module docs, not from
//! the fast implementation: character by character, `//` merged by repeated replacement, and
//! RFC 3986 §5.2.4's remove_dot_segments loop taken literally. It may be slow; it must be
//! obviously right.

/// `Err` names the reason: `"nul"`, `"escape"` or `"param"`.
pub fn reference_normalize(raw: &str, strip_params: bool) -> Result<String, &'static str> {
    // Query and fragment.
    let mut path = String::new();
    for c in raw.chars() {
        if c == '?' || c == '#' {
            break;
        }
        path.push(c);
    }
    // Percent-decoding, once.
    let chars: Vec<char> = path.chars().collect();
    let mut decoded = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\0' {
            return Err("nul");
        }
        if c != '%' {
            decoded.push(c);
            i += 1;
            continue;
        }
        let digits: String = chars.iter().skip(i + 1).take(2).collect();
        if digits.chars().count() != 2 || !digits.chars().all(|d| d.is_ascii_hexdigit()) {
            return Err("escape");
        }
        let value = u8::from_str_radix(&digits, 16).map_err(|_| "escape")?;
        if value == 0 {
            return Err("nul");
        }
        let ch = char::from(value);
        if ch.is_ascii_alphanumeric() || "-._~/\\".contains(ch) {
            decoded.push(ch);
        } else {
            decoded.push_str(&format!("%{value:02X}"));
        }
        i += 3;
    }
    // Backslash is slash.
    let mut s = decoded.replace('\\', "/");
    // Path parameters.
    if s.contains(';') {
        if !strip_params {
            return Err("param");
        }
        let mut kept = String::new();
        let mut skipping = false;
        for c in s.chars() {
            if c == ';' {
                skipping = true;
            } else if c == '/' {
                skipping = false;
                kept.push(c);
            } else if !skipping {
                kept.push(c);
            }
        }
        s = kept;
    }
    if !s.starts_with('/') {
        s.insert(0, '/');
    }
    while s.contains("//") {
        s = s.replace("//", "/");
    }
    Ok(remove_dot_segments(&s))
}

/// RFC 3986 §5.2.4, step by step.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("/./") {
            input = format!("/{rest}");
        } else if input == "/." {
            input = "/".to_string();
        } else if let Some(rest) = input.strip_prefix("/../") {
            input = format!("/{rest}");
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        } else if input == "/.." {
            input = "/".to_string();
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |k| k + start);
            output.push_str(&input[..end]);
            input = input[end..].to_string();
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}
