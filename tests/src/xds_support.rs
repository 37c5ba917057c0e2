//! Helpers for the xDS end-to-end tests: where containers on a [`crate::TestNet`] reach a
//! control plane that runs in the test process on the host.

use std::process::Command;

use anyhow::{bail, Context};

use crate::TestNet;

/// The gateway IP of the test network: the host as seen from its containers. The network
/// exists once a container joined it (start one first).
pub fn network_gateway(net: &TestNet) -> anyhow::Result<String> {
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
