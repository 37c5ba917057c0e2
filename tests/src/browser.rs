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
    let shot = Command::new("chromium")
        .args(common)
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .context("chromium (Debian package, installed by scripts/setup)")?;
    if !shot.status.success() || !screenshot.is_file() {
        bail!(
            "chromium --screenshot: {}",
            String::from_utf8_lossy(&shot.stderr)
        );
    }
    let dom = Command::new("chromium")
        .args(common)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .context("chromium --dump-dom")?;
    if !dom.status.success() {
        bail!(
            "chromium --dump-dom: {}",
            String::from_utf8_lossy(&dom.stderr)
        );
    }
    String::from_utf8(dom.stdout).context("chromium's DOM is not UTF-8")
}
