//! Helpers for the xDS end-to-end tests: where containers on a [`crate::TestNet`] reach a
//! control plane that runs in the test process on the host.

use std::process::Command;

use anyhow::{bail, Context};

use crate::TestNet;

/// The gateway IP of the test network: the host as seen from its containers. Creates the
/// network when no container has joined it yet (a bootstrap needs the address before its
/// sidecar starts); [`TestNet`] removes it on drop either way.
pub fn network_gateway(net: &TestNet) -> anyhow::Result<String> {
    let exists = Command::new("docker")
        .args(["network", "inspect", net.name()])
        .output()
        .context("running docker network inspect")?
        .status
        .success();
    if !exists {
        let created = Command::new("docker")
            .args(["network", "create", net.name()])
            .output()
            .context("running docker network create")?;
        let stderr = String::from_utf8_lossy(&created.stderr);
        if !created.status.success() && !stderr.contains("already exists") {
            bail!("docker network create {}: {stderr}", net.name());
        }
    }
    let output = Command::new("docker")
        .args([
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            net.name(),
        ])
        .output()
        .context("running docker network inspect")?;
    if !output.status.success() {
        bail!(
            "docker network inspect {}: {}",
            net.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    match text
        .split_whitespace()
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
    {
        Some(ip) => Ok(ip.to_string()),
        None => bail!("network {} has no IPv4 gateway: {text:?}", net.name()),
    }
}
