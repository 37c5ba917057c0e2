//! The JSON path at a serde_json error position, e.g. `services[0].split[1].weight`.
//!
//! `serde_path_to_error` gives the same answer but wraps every type's deserializer, which costs
//! each filter ~16-34 KB of wasm; a rescan of the text up to the error's line and column costs
//! about 1 KB and runs only when the configuration is refused.

enum Frame {
    /// The key being read or whose value is being read.
    Object(Option<String>),
    Array(usize),
}

/// The path of the value serde_json was reading at `line`/`column` (1-based, as in
/// `serde_json::Error`); `configuration` for the document itself.
pub(crate) fn path_at(json: &[u8], line: usize, column: usize) -> String {
    let end = offset(json, line, column).min(json.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while i < end {
        match json.get(i).copied().unwrap_or(b' ') {
            b'{' => {
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    expecting_key = true;
                }
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < end && json.get(i) != Some(&b'"') {
                    i += if json.get(i) == Some(&b'\\') { 2 } else { 1 };
                }
                if let (true, Some(Frame::Object(key))) = (expecting_key, stack.last_mut()) {
                    let text = json.get(start..i.min(end)).unwrap_or_default();
                    *key = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) if path.is_empty() => path.push_str(key),
            Frame::Object(Some(key)) => {
                path.push('.');
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    if path.is_empty() {
        "configuration".to_string()
    } else {
        path
    }
}

/// Byte offset just past `column` on `line`.
fn offset(json: &[u8], line: usize, column: usize) -> usize {
    let mut current = 1;
    for (i, b) in json.iter().enumerate() {
        if current == line {
            return i + column;
        }
        if *b == b'\n' {
            current += 1;
        }
    }
    json.len()
}
