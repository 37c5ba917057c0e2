use std::{
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// A private Docker network for one test; containers find each other there by hostname.
///
/// testcontainers creates the network when the first container joins it and removes it when the
/// last one is dropped; dropping a `TestNet` also removes it, in case a container start failed
/// half-way. Declare it first in a test so it drops last.
#[derive(Debug)]
pub struct TestNet {
    name: String,
}

// === impl TestNet ===

impl TestNet {
    /// A network named `weft-e2e-<label>-<pid>-<n>-<nanos>`, unique across the parallel tests of
    /// one run and across runs.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        let name = format!(
            "weft-e2e-{label}-{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await. Failure means testcontainers removed it.
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
