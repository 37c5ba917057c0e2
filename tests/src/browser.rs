//! A real browser on a page the control plane serves: headless Chromium (the Debian package
//! `scripts/setup` installs) renders it, scripts and all.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::workspace_root;

/// `target/e2e-artifacts/` (screenshots and other files a test leaves for a person to look at).
pub fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("e2e-artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Headless Chromium on `url`: the DOM after the page's scripts ran, and a screenshot.
pub fn chromium(url: &str, screenshot: &Path) -> anyhow::Result<String> {
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1400,900",
        "--virtual-time-budget=5000",
        // The API's certificate is from the test mesh's CA, which Chromium cannot be given
        // on the command line; only these test pages are opened with it.
        "--ignore-certificate-errors",
    ];
    // Chromium abandons a page load with `net::ERR_NETWORK_CHANGED` when a network
    // interface comes or goes, which the other e2e binaries running beside this one do
    // whenever they create or remove a Docker network. Such a run is tried again, with a
    // fresh process, a bounded number of times.
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let _ = std::fs::remove_file(screenshot);
        let shot = Command::new("chromium")
            .args(common)
            .arg(format!("--screenshot={}", screenshot.display()))
            .arg(url)
            .output()
            .context("chromium (Debian package, installed by scripts/setup)")?;
        let stderr = String::from_utf8_lossy(&shot.stderr).into_owned();
        if !shot.status.success() || !screenshot.is_file() || page_load_failed(&stderr) {
            last = format!("chromium --screenshot (attempt {attempt}): {stderr}");
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        let dom = Command::new("chromium")
            .args(common)
            .arg("--dump-dom")
            .arg(url)
            .output()
            .context("chromium --dump-dom")?;
        let stderr = String::from_utf8_lossy(&dom.stderr).into_owned();
        if !dom.status.success() || page_load_failed(&stderr) {
            last = format!("chromium --dump-dom (attempt {attempt}): {stderr}");
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        return String::from_utf8(dom.stdout).context("chromium's DOM is not UTF-8");
    }
    bail!("{last}")
}

/// How many times a page is opened before its failure is reported.
const ATTEMPTS: u32 = 4;

/// Whether headless Chromium says it gave up on the page (it can still exit 0 then).
fn page_load_failed(stderr: &str) -> bool {
    stderr.contains("Page load failed")
}

/// A box the graph page drew (a service or an edge label) as the browser laid it out:
/// `data-box` (the box) and `data-text-box` (the union of its text lines), screen pixels
/// `(left, top, width, height)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnBox {
    pub name: String,
    pub rect: [f64; 4],
    pub text: Option<[f64; 4]>,
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = tag.get(start..)?;
    rest.get(..rest.find('"')?)
}

fn rect(text: &str) -> Option<[f64; 4]> {
    let v: Vec<f64> = text.split(',').filter_map(|n| n.parse().ok()).collect();
    <[f64; 4]>::try_from(v).ok()
}

/// Every `<g data-node=…>` and `<g data-label=…>` of a dumped DOM with its boxes.
pub fn label_boxes(dom: &str) -> Vec<DrawnBox> {
    dom.split("<g ")
        .skip(1)
        .filter_map(|rest| {
            let tag = format!(" {}", rest.get(..rest.find('>')?)?);
            let name = attribute(&tag, "data-node").or_else(|| attribute(&tag, "data-label"))?;
            Some(DrawnBox {
                name: name.replace("&gt;", ">"),
                rect: rect(attribute(&tag, "data-box")?)?,
                text: attribute(&tag, "data-text-box").and_then(rect),
            })
        })
        .collect()
}

fn intersects(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// Pairs of boxes whose rectangles or text overlap, and boxes whose text leaves its
/// rectangle (named `(box, "outside")`); half a pixel of rounding is allowed.
pub fn overlapping(boxes: &[DrawnBox]) -> Vec<(String, String)> {
    let shrink = |r: &[f64; 4]| [r[0] + 0.5, r[1] + 0.5, r[2] - 1.0, r[3] - 1.0];
    let mut out = Vec::new();
    for (i, a) in boxes.iter().enumerate() {
        if let Some(t) = &a.text {
            let r = &a.rect;
            if t[0] < r[0] - 0.5
                || t[1] < r[1] - 0.5
                || t[0] + t[2] > r[0] + r[2] + 0.5
                || t[1] + t[3] > r[1] + r[3] + 0.5
            {
                out.push((a.name.clone(), "outside".to_string()));
            }
        }
        for b in boxes.iter().skip(i + 1) {
            let texts = match (&a.text, &b.text) {
                (Some(x), Some(y)) => intersects(&shrink(x), &shrink(y)),
                _ => false,
            };
            if intersects(&shrink(&a.rect), &shrink(&b.rect)) || texts {
                out.push((a.name.clone(), b.name.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_network_change_is_a_failed_load() {
        assert!(super::page_load_failed(
            "[1:2:ERROR:headless_command_handler.cc:403] Page load failed: net::ERR_NETWORK_CHANGED"
        ));
        assert!(!super::page_load_failed("Failed to connect to the bus"));
    }
}
