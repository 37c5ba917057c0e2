//! The dependency list inside the module: a wasm custom section `.dep-v0` holding
//! zlib-wrapped JSON in cargo-auditable's format, so `cargo audit bin`, syft or trivy read
//! weft's modules as they read any binary built with `cargo auditable`.
//!
//! weft adds the section itself after `wasm-opt` (which may drop custom sections it does not
//! know), and writes the zlib stream with stored (uncompressed) deflate blocks: a valid zlib
//! stream any inflater reads, without a compression dependency; a few KiB per module.

use serde::{Deserialize, Serialize};

use crate::deps::{DependencyList, Kind, Source};
use crate::SupplyError;

/// cargo-auditable's section name.
pub const SECTION: &str = ".dep-v0";
/// The largest section accepted when reading one back.
const MAX_SECTION: usize = 4 << 20;

/// cargo-auditable's `VersionInfo` (format 1: from `cargo metadata`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(default)]
    pub format: u32,
    pub packages: Vec<AuditablePackage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditablePackage {
    pub name: String,
    pub version: String,
    /// `crates.io`, `local`, `git`, `registry`.
    pub source: String,
    /// `build` or `runtime` (the default, left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

// === impl VersionInfo ===

impl VersionInfo {
    pub fn from_list(list: &DependencyList) -> Self {
        let packages = list
            .packages
            .iter()
            .enumerate()
            .map(|(index, p)| AuditablePackage {
                name: p.name.clone(),
                version: p.version.clone(),
                source: match &p.source {
                    Source::CratesIo => "crates.io",
                    Source::Local => "local",
                    Source::Git(_) => "git",
                    Source::Registry(_) => "registry",
                }
                .to_string(),
                kind: (p.kind == Kind::Build).then(|| "build".to_string()),
                dependencies: p.dependencies.clone(),
                root: index == list.root,
            })
            .collect();
        Self {
            format: 1,
            packages,
        }
    }
}

/// `wasm` with the section `SECTION` holding `info` appended (an existing one is replaced).
pub fn embed(wasm: &[u8], info: &VersionInfo) -> Result<Vec<u8>, SupplyError> {
    let json = serde_json::to_vec(info)
        .map_err(|e| SupplyError::invalid("dependency list", e.to_string()))?;
    let sections = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len() + json.len() + 64);
    out.extend_from_slice(wasm.get(..8).unwrap_or_default());
    for section in sections.iter().filter(|s| s.custom_name != Some(SECTION)) {
        out.extend_from_slice(section.raw);
    }
    let payload = zlib_stored(&json);
    let mut body = Vec::new();
    leb128(&mut body, SECTION.len() as u64);
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(&payload);
    out.push(0);
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The dependency list a module carries, `None` when it has no `SECTION`.
pub fn read(wasm: &[u8]) -> Result<Option<VersionInfo>, SupplyError> {
    let origin = "the module's .dep-v0 section";
    let Some(section) = sections(wasm)?
        .into_iter()
        .find(|s| s.custom_name == Some(SECTION))
    else {
        return Ok(None);
    };
    let json =
        inflate_stored(section.payload).map_err(|reason| SupplyError::invalid(origin, reason))?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| SupplyError::invalid(origin, e.to_string()))
}

/// `wasm` without the exports named in `names`; returns the module and the names it dropped
/// (those it had). Only the export section changes: the functions stay until a later pass
/// (`wasm-opt`) removes what nothing references.
pub fn drop_exports(wasm: &[u8], names: &[&str]) -> Result<(Vec<u8>, Vec<String>), SupplyError> {
    let bad = |reason: &str| SupplyError::invalid("wasm export section", reason.to_string());
    let mut out = Vec::with_capacity(wasm.len());
    out.extend_from_slice(wasm.get(..8).unwrap_or_default());
    let mut dropped = Vec::new();
    for section in sections(wasm)? {
        if section.raw.first() != Some(&EXPORT_SECTION) {
            out.extend_from_slice(section.raw);
            continue;
        }
        let mut at = 1;
        read_leb128(section.raw, &mut at).ok_or_else(|| bad("bad size"))?;
        let count = read_leb128(section.raw, &mut at).ok_or_else(|| bad("bad count"))?;
        let mut kept = 0u64;
        let mut body = Vec::new();
        for _ in 0..count {
            let start = at;
            let len = read_leb128(section.raw, &mut at).ok_or_else(|| bad("bad name length"))?;
            let name_end = usize::try_from(len)
                .ok()
                .and_then(|l| at.checked_add(l))
                .filter(|e| *e <= section.raw.len())
                .ok_or_else(|| bad("a name runs past the section"))?;
            let name = std::str::from_utf8(section.raw.get(at..name_end).unwrap_or_default())
                .map_err(|_| bad("a name is not UTF-8"))?;
            at = name_end + 1; // the kind byte
            read_leb128(section.raw, &mut at).ok_or_else(|| bad("bad index"))?;
            let entry = section
                .raw
                .get(start..at)
                .ok_or_else(|| bad("an export runs past the section"))?;
            if names.contains(&name) {
                dropped.push(name.to_string());
            } else {
                kept += 1;
                body.extend_from_slice(entry);
            }
        }
        if at != section.raw.len() {
            return Err(bad("bytes after the last export"));
        }
        let mut payload = Vec::with_capacity(body.len() + 5);
        leb128(&mut payload, kept);
        payload.extend_from_slice(&body);
        out.push(EXPORT_SECTION);
        leb128(&mut out, payload.len() as u64);
        out.extend_from_slice(&payload);
    }
    Ok((out, dropped))
}

/// The export section's id.
const EXPORT_SECTION: u8 = 7;

struct Section<'a> {
    /// The whole section, id and size included.
    raw: &'a [u8],
    custom_name: Option<&'a str>,
    /// A custom section's bytes after its name.
    payload: &'a [u8],
}

fn sections(wasm: &[u8]) -> Result<Vec<Section<'_>>, SupplyError> {
    let bad = |reason: &str| SupplyError::invalid("wasm module", reason.to_string());
    if wasm.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        return Err(bad("not a wasm module (magic/version)"));
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < wasm.len() {
        let start = at;
        let id = wasm.get(at).copied().ok_or_else(|| bad("truncated"))?;
        at += 1;
        let size = read_leb128(wasm, &mut at).ok_or_else(|| bad("bad section size"))?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| at.checked_add(s))
            .filter(|end| *end <= wasm.len())
            .ok_or_else(|| bad("a section runs past the end"))?;
        let (mut custom_name, mut payload) = (None, &[][..]);
        if id == 0 {
            let mut name_at = at;
            let len = read_leb128(wasm, &mut name_at).ok_or_else(|| bad("bad name"))?;
            let name_end = usize::try_from(len)
                .ok()
                .and_then(|l| name_at.checked_add(l))
                .filter(|e| *e <= end)
                .ok_or_else(|| bad("a custom section name runs past its section"))?;
            custom_name = wasm
                .get(name_at..name_end)
                .and_then(|n| std::str::from_utf8(n).ok());
            payload = wasm.get(name_end..end).unwrap_or_default();
        }
        out.push(Section {
            raw: wasm.get(start..end).unwrap_or_default(),
            custom_name,
            payload,
        });
        at = end;
    }
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// zlib (RFC 1950) around stored deflate blocks (RFC 1951 §3.2.4).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Reads what [`zlib_stored`] writes (stored blocks only: weft's own sections).
fn inflate_stored(zlib: &[u8]) -> Result<Vec<u8>, String> {
    let header = zlib.get(..2).ok_or("truncated zlib header")?;
    if header.first().map(|b| b & 0x0f) != Some(8)
        || (u16::from(header[0]) << 8 | u16::from(header[1])) % 31 != 0
    {
        return Err("not a zlib stream".into());
    }
    let mut at = 2;
    let mut out = Vec::new();
    loop {
        let flags = *zlib.get(at).ok_or("truncated deflate block")?;
        if flags & 0b110 != 0 {
            return Err(
                "compressed deflate blocks (not written by weft); read it with `cargo audit bin`"
                    .into(),
            );
        }
        let len = zlib.get(at + 1..at + 3).ok_or("truncated block length")?;
        let nlen = zlib.get(at + 3..at + 5).ok_or("truncated block length")?;
        let len = u16::from_le_bytes([len[0], len[1]]);
        if !len != u16::from_le_bytes([nlen[0], nlen[1]]) {
            return Err("corrupt stored block length".into());
        }
        at += 5;
        let data = zlib
            .get(at..at + usize::from(len))
            .ok_or("truncated stored block")?;
        out.extend_from_slice(data);
        if out.len() > MAX_SECTION {
            return Err(format!("larger than {MAX_SECTION} bytes"));
        }
        at += usize::from(len);
        if flags & 1 == 1 {
            break;
        }
    }
    let checksum = zlib.get(at..at + 4).ok_or("truncated adler32")?;
    if u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]) != adler32(&out) {
        return Err("adler32 mismatch".into());
    }
    Ok(out)
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for byte in chunk {
            a += u32::from(*byte);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    b << 16 | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(out: &mut Vec<u8>, n: &str) {
        leb128(out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
    }

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        leb128(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    fn exports(entries: &[(&str, u8, u64)]) -> Vec<u8> {
        let mut payload = Vec::new();
        leb128(&mut payload, entries.len() as u64);
        for (n, kind, index) in entries {
            name(&mut payload, n);
            payload.push(*kind);
            leb128(&mut payload, *index);
        }
        section(EXPORT_SECTION, &payload)
    }

    fn module(export_section: &[u8]) -> Vec<u8> {
        let mut custom = Vec::new();
        name(&mut custom, "name");
        custom.extend_from_slice(b"\x01\x02\x03");
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        out.extend_from_slice(&section(1, b"\x01\x60\x00\x00"));
        out.extend_from_slice(export_section);
        out.extend_from_slice(&section(0, &custom));
        out
    }

    #[test]
    fn only_the_named_exports_leave_and_every_other_byte_stays() {
        // An index over 127 takes two LEB128 bytes.
        let before = module(&exports(&[
            ("proxy_on_request_headers", 0, 3),
            ("proxy_on_response_body", 0, 200),
            ("memory", 2, 0),
        ]));
        let (after, dropped) =
            drop_exports(&before, &["proxy_on_response_body", "proxy_on_grpc_close"]).unwrap();
        assert_eq!(dropped, ["proxy_on_response_body"]);
        assert_eq!(
            after,
            module(&exports(&[
                ("proxy_on_request_headers", 0, 3),
                ("memory", 2, 0)
            ]))
        );
        // Again: nothing left to drop, the same bytes.
        let (again, dropped) = drop_exports(&after, &["proxy_on_response_body"]).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(again, after);
    }

    #[test]
    fn a_malformed_export_section_is_refused_by_name() {
        let mut broken = exports(&[("proxy_on_log", 0, 1)]);
        // Claim a second export the section does not hold.
        broken[2] = 2;
        let err = drop_exports(&module(&broken), &["x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("wasm export section"), "{err}");
        let err = drop_exports(b"not wasm", &["x"]).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
    }
}
