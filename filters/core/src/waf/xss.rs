//! Cross-site scripting by tokenising HTML, libinjection's approach written for weft: the
//! value is read as HTML in the contexts an injection lands in (text, and inside a double-,
//! single- or un-quoted attribute value it breaks out of), each tag and attribute is
//! tokenised, and what executes script is flagged: script-capable tags, event-handler
//! attributes, `javascript:`-like URLs in URL attributes, CSS expressions. `<b>` and
//! `<a href="https://...">` pass.

use super::decode::find;

/// Tags that run or load script (or change how the page resolves it).
const TAGS: [&str; 24] = [
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "link", "meta",
    "style", "import", "isindex", "xml", "xss", "noscript", "handler", "listener", "vmlframe",
    "svg", "math", "portal", "comment", "template",
];

/// Event names whose `on<name>` attribute runs script (the common DOM events; `online` and
/// `offline` left out: they are words).
const EVENTS: [&str; 80] = [
    "abort",
    "afterprint",
    "animationend",
    "animationiteration",
    "animationstart",
    "auxclick",
    "beforeinput",
    "beforeprint",
    "beforeunload",
    "begin",
    "blur",
    "bounce",
    "canplay",
    "canplaythrough",
    "change",
    "click",
    "close",
    "contextmenu",
    "copy",
    "cuechange",
    "cut",
    "dblclick",
    "drag",
    "dragend",
    "dragenter",
    "dragleave",
    "dragover",
    "dragstart",
    "drop",
    "durationchange",
    "end",
    "ended",
    "error",
    "finish",
    "focus",
    "focusin",
    "focusout",
    "hashchange",
    "input",
    "invalid",
    "keydown",
    "keypress",
    "keyup",
    "load",
    "loadeddata",
    "loadstart",
    "message",
    "mousedown",
    "mouseenter",
    "mouseleave",
    "mousemove",
    "mouseout",
    "mouseover",
    "mouseup",
    "mousewheel",
    "pagehide",
    "pageshow",
    "paste",
    "pause",
    "play",
    "playing",
    "pointerdown",
    "pointerenter",
    "pointerover",
    "pointerup",
    "popstate",
    "repeat",
    "reset",
    "resize",
    "scroll",
    "search",
    "select",
    "show",
    "start",
    "submit",
    "timeupdate",
    "toggle",
    "touchstart",
    "transitionend",
    "wheel",
];

const URL_ATTRS: [&str; 11] = [
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "xlink:href",
    "background",
    "dynsrc",
    "lowsrc",
    "poster",
    "srcdoc",
];

/// The contexts: text, and the prefixes that put the value inside an attribute value.
const CONTEXTS: [(&str, Option<u8>); 4] = [
    ("", None),
    ("<x y=\"", Some(b'"')),
    ("<x y='", Some(b'\'')),
    ("<x y=", Some(b' ')),
];

/// Whether an attribute value is a script URL (after dropping whitespace and controls, as
/// browsers do inside the scheme).
pub fn is_script_url(value: &str) -> bool {
    const SCHEMES: [&str; 5] = [
        "javascript:",
        "vbscript:",
        "livescript:",
        "data:text/html",
        "data:application/x",
    ];
    // The longest scheme's worth of the squeezed value, without a copy of the rest: a
    // non-ASCII character ends what can match (every scheme is ASCII).
    const LONGEST: usize = {
        let mut longest = 0;
        let mut i = 0;
        while i < SCHEMES.len() {
            if SCHEMES[i].len() > longest {
                longest = SCHEMES[i].len();
            }
            i += 1;
        }
        longest
    };
    let mut head = [0u8; LONGEST];
    let mut len = 0;
    for c in value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
    {
        if len == LONGEST || !c.is_ascii() {
            break;
        }
        head[len] = c as u8;
        len += 1;
    }
    let head = &head[..len];
    SCHEMES.iter().any(|p| head.starts_with(p.as_bytes()))
}

fn dangerous_attr(name: &str, value: Option<&str>, strict: bool) -> bool {
    if let Some(event) = name.strip_prefix("on") {
        if value.is_some() && (EVENTS.contains(&event) || (strict && event.len() >= 3)) {
            return true;
        }
    }
    let Some(value) = value else {
        return false;
    };
    if URL_ATTRS.contains(&name) && (is_script_url(value) || name == "srcdoc") {
        return true;
    }
    name == "style"
        && ["expression(", "javascript:", "-moz-binding", "behavior:"]
            .iter()
            .any(|p| value.contains(p))
}

/// Reads `html` (normalised: lower case) from `start` as HTML text; whether a tag or
/// attribute in it runs script. `in_attr`: the input begins inside an attribute value
/// quoted with this byte (space: unquoted).
fn scan(html: &str, in_attr: Option<u8>, strict: bool) -> bool {
    let b = html.as_bytes();
    let mut i = 0;
    if let Some(q) = in_attr {
        // The attribute value the input was placed in ends at its quote; what follows is
        // attributes of the same tag.
        let end = if q == b' ' {
            b.iter().position(|c| c.is_ascii_whitespace() || *c == b'>')
        } else {
            b.iter().position(|c| *c == q)
        };
        let Some(end) = end else { return false };
        i = end + 1;
        if b.get(end) == Some(&b'>') {
            i = end;
        } else {
            match attributes(html, i, strict) {
                (true, _) => return true,
                (false, next) => i = next,
            }
        }
    }
    while let Some(rel) = b.get(i..).and_then(|r| r.iter().position(|c| *c == b'<')) {
        i += rel + 1;
        match b.get(i) {
            Some(b'!') if b.get(i + 1..i + 3) == Some(b"--") => {
                i = find(b, i + 3, b"-->").map_or(b.len(), |p| p + 3);
            }
            Some(b'/') => {
                // An end tag: only its name matters (`</script>` starts nothing).
                i += 1;
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'>' | b'/' | b'<'))
                {
                    i += 1;
                }
                let name = html.get(start..i).unwrap_or("");
                if TAGS.contains(&name) {
                    return true;
                }
                match attributes(html, i, strict) {
                    (true, _) => return true,
                    (false, next) => i = next,
                }
            }
            _ => {}
        }
    }
    false
}

/// The attributes of a tag from `i` to its `>`: whether one is dangerous, and where the tag
/// ended.
fn attributes(html: &str, mut i: usize, strict: bool) -> (bool, usize) {
    let b = html.as_bytes();
    loop {
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
        {
            i += 1;
        }
        match b.get(i) {
            None => return (false, i),
            Some(b'>') => return (false, i + 1),
            Some(_) => {}
        }
        let start = i;
        if b.get(i) == Some(&b'<') {
            // A new tag inside this one (`<scr<script>`): the scanner reads it.
            return (false, i);
        }
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b'>' | b'/' | b'<'))
        {
            i += 1;
        }
        let name = html.get(start..i).unwrap_or("");
        if i == start {
            i += 1; // a stray `=`
            continue;
        }
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            let (from, to, next) = match b.get(i) {
                Some(q @ (b'"' | b'\'' | b'`')) => {
                    let end = find(b, i + 1, &[*q]).unwrap_or(b.len());
                    (i + 1, end, end + 1)
                }
                _ => {
                    let end = b
                        .get(i..)
                        .and_then(|r| r.iter().position(|c| c.is_ascii_whitespace() || *c == b'>'))
                        .map_or(b.len(), |p| p + i);
                    (i, end, end)
                }
            };
            value = Some(html.get(from..to).unwrap_or(""));
            i = next;
        }
        if dangerous_attr(name, value, strict) {
            return (true, i);
        }
    }
}

/// Whether the normalised value `input` is an XSS injection (`strict`: paranoia 2, any
/// `on<word>=` attribute counts).
pub fn is_xss(input: &str, strict: bool) -> bool {
    if is_script_url(input) {
        return true;
    }
    let bytes = input.as_bytes();
    CONTEXTS.iter().any(|(_, quote)| match quote {
        None => bytes.contains(&b'<') && scan(input, None, strict),
        Some(b' ') => bytes.contains(&b'=') && scan(input, Some(b' '), strict),
        Some(q) => bytes.contains(q) && scan(input, Some(*q), strict),
    })
}

#[cfg(test)]
mod tests {
    use super::{is_script_url, is_xss};

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn script_urls_are_read_past_whitespace_and_controls_but_not_past_other_text() {
        for s in [
            "javascript:alert(1)",
            " j a v a s c r i p t :x",
            "java\u{0}script:x",
            "\u{a0}\u{2003}vbscript:x",
            "javascript:\u{e9}t\u{e9}",
            "data:text/html\u{e9}",
            "data:application/xhtml+xml,x",
        ] {
            assert!(is_script_url(s), "{s:?}");
        }
        for s in [
            "",
            "javascript",
            "\u{ff4a}avascript:x",
            "java\u{e9}script:x",
            "xjavascript:x",
            "data:text/plain",
        ] {
            assert!(!is_script_url(s), "{s:?}");
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn injections_are_found() {
        for s in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert(1)>",
            "<body onload=alert(1)>",
            "<iframe src=\"javascript:alert(1)\"></iframe>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\" jav\tascript:alert(1)\">x</a>",
            "javascript:alert(document.cookie)",
            "\" onmouseover=\"alert(1)",
            "' onfocus='alert(1)' autofocus='",
            "x onmouseover=alert(1)",
            "\"><script>alert(1)</script>",
            "<div style=\"width: expression(alert(1))\">",
            "<details open ontoggle=alert(1)>",
            "<input autofocus onfocus=alert(1)>",
            "<form><button formaction=javascript:alert(1)>x",
            "<object data=\"data:text/html;base64,pho\">",
            "<img src=x onerror=alert(1)",
        ] {
            assert!(is_xss(s, false), "{s}");
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn markup_and_prose_pass() {
        for s in [
            "<b>bold</b> and <i>italic</i>",
            "<a href=\"https://example.com/x?a=1\">link</a>",
            "<p class=\"note\">hello</p>",
            "a < b and c > d",
            "x=1 online=yes",
            "she said \"on\" is a word",
            "\"online\" = true",
            "1 < 2",
            "price <= 10",
            "see <https://example.com>",
            "email me: a@b.c",
        ] {
            assert!(!is_xss(s, false), "{s}");
        }
    }
}
