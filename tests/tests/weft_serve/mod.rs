//! The real `weft serve` as a host process (built by cargo), and the real CLI against it.
#![cfg(test)]
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_e2e::{workspace_root, EnvoyOptions, Pod, TestNet, UpstreamOptions, ADMIN_SOCKET};
use weft_xds::bootstrap::{self, BootstrapParams, XdsUpstreamTls};

/// Builds (incrementally) the binary under test; cargo test builds only this crate's deps.
pub fn weft_bin() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "weft"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p weft failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/weft")
}

/// `weft serve` arguments for a mesh with the CA on: xDS over TLS on any port, named
/// `gateway` (the test network's gateway, how sidecars reach it) and 127.0.0.1, no warm-up.
pub fn ca_mesh_args(gateway: &str) -> Vec<String> {
    [
        "--xds-listen",
        "0.0.0.0:0",
        "--mesh-warmup-ms",
        "0",
        "--ca",
        "--xds-tls-name",
        &format!("{gateway},127.0.0.1"),
    ]
    .map(str::to_string)
    .to_vec()
}

/// A running `weft serve`, killed when dropped.
pub struct WeftServer {
    child: Child,
    /// The REST API's base URL.
    pub api: String,
    pub xds_port: u16,
    /// Appended to every [`WeftServer::cli`] call: `--server <api> --token-file <admin.token>`
    /// to begin with.
    pub cli_flags: Vec<String>,
    /// The admin operator's token the first start wrote to `<data>/admin.token`.
    pub token: String,
    /// `<data>/ca-bundle.pem` when the API speaks TLS ([`WeftServer::start_tls`]).
    pub ca_file: Option<PathBuf>,
    /// Prometheus' unauthenticated listener, with `--metrics-listen`.
    pub metrics: Option<String>,
}

impl WeftServer {
    /// `weft serve` on `data`, the API in plain HTTP on a loopback port
    /// (`--insecure-listen`), a 2 s grace, the built filters, and `args` (at least
    /// `--xds-listen`); waits up to 30 s for it to print its addresses.
    pub fn start(bin: &Path, data: &Path, args: &[&str]) -> Self {
        Self::start_on(bin, data, &["--insecure-listen", "127.0.0.1:0"], args)
    }

    /// [`WeftServer::start`] with the API over TLS from the mesh CA (`args` must hold `--ca`);
    /// the CLI verifies it with `<data>/ca-bundle.pem`.
    pub fn start_tls(bin: &Path, data: &Path, args: &[&str]) -> Self {
        let mut server = Self::start_on(bin, data, &["--listen", "127.0.0.1:0"], args);
        let bundle = data.join("ca-bundle.pem");
        server.cli_flags.push("--ca-file".into());
        server.cli_flags.push(bundle.display().to_string());
        server.ca_file = Some(bundle);
        server
    }

    /// [`WeftServer::start`] serving the modules of `modules_dir`, signature-checked against
    /// the trust list `signers`.
    pub fn start_with_modules(
        bin: &Path,
        data: &Path,
        args: &[&str],
        modules_dir: &Path,
        signers: &Path,
    ) -> Self {
        Self::start_full(
            bin,
            data,
            &["--insecure-listen", "127.0.0.1:0"],
            args,
            (modules_dir, signers),
        )
    }

    fn start_on(bin: &Path, data: &Path, listen: &[&str], args: &[&str]) -> Self {
        let (dir, signers) = (weft_e2e::filters_dir(), weft_e2e::module_signers());
        Self::start_full(bin, data, listen, args, (&dir, &signers))
    }

    fn start_full(
        bin: &Path,
        data: &Path,
        listen: &[&str],
        args: &[&str],
        (modules_dir, signers): (&Path, &Path),
    ) -> Self {
        let mut child = Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(listen)
            .args(["--log-level", "warn"])
            .args(["--grace-ms", "2000"])
            .args(args)
            .arg("--modules-dir")
            .arg(modules_dir)
            .arg("--module-signers")
            .arg(signers)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut api, mut xds, mut metrics) = (None, None, None);
        let want_metrics = args.contains(&"--metrics-listen");
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none() || xds.is_none() || (want_metrics && metrics.is_none()) {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                stop_and_panic(&mut child, "weft serve did not print its addresses in 30 s");
            };
            if let Some(a) = line.strip_prefix("listening on ") {
                api = Some(a.to_string());
            } else if let Some(a) = line.strip_prefix("xds listening on ") {
                xds = Some(a.rsplit(':').next().unwrap().parse::<u16>().unwrap());
            } else if let Some(a) = line.strip_prefix("metrics listening on ") {
                metrics = Some(a.to_string());
            }
        }
        let api: String = api.unwrap();
        let token_file = data.join("admin.token");
        let token = match std::fs::read_to_string(&token_file) {
            Ok(token) => token.trim().to_string(),
            // With shared operators (etcd) only the first replica writes one: copy it.
            Err(e) => stop_and_panic(
                &mut child,
                &format!("the first start writes {}: {e}", token_file.display()),
            ),
        };
        Self {
            child,
            cli_flags: vec![
                "--server".into(),
                api.clone(),
                "--token-file".into(),
                token_file.display().to_string(),
            ],
            api,
            xds_port: xds.unwrap(),
            token,
            ca_file: None,
            metrics,
        }
    }

    /// `Authorization: Bearer <admin token>`.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The process id (to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not aborted by a panic)?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `weft apply -f file` without waiting for sidecars' ACKs; fails the test unless it exits 0.
    pub fn apply_file(&self, bin: &Path, file: &Path) {
        let file = file.display().to_string();
        let (code, out, err) = self.cli(bin, &["apply", "-f", &file, "--ack-timeout", "0"]);
        assert_eq!(code, 0, "weft apply -f {file}\n{out}\n{err}");
    }

    /// `GET <api><path>` with the admin token (the plain-HTTP API of [`WeftServer::start`]).
    pub async fn api_get(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.api_text(path).await).unwrap()
    }

    /// [`api_get`](Self::api_get)'s body as text (e.g. `/metrics`).
    pub async fn api_text(&self, path: &str) -> String {
        weft_e2e::http_client()
            .get(format!("{}{path}", self.api))
            .header("authorization", self.authorization())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `GET <api><path>` as the admin, over TLS pinned to the server's CA bundle when the API
    /// speaks TLS ([`WeftServer::start_tls`]); fails the test on a status other than 2xx.
    pub async fn api_json(&self, path: &str) -> serde_json::Value {
        let bundle = self.ca_file.as_ref().map(|f| std::fs::read(f).unwrap());
        weft_e2e::api_client(bundle.as_deref(), &self.token)
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Runs the CLI against this server; returns (exit code, stdout, stderr).
    pub fn cli(&self, bin: &Path, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(bin)
            .args(args)
            .args(&self.cli_flags)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl WeftServer {
    /// A pod of `namespace/service` `version` joining this server (started with `--ca` and
    /// `--xds-tls-name <gateway>`) as a real sidecar does: a join token from
    /// `weft token create`, SDS for its SVID, xDS over TLS pinned to `weft ca show --bundle`,
    /// its inbound listener (15006) mapped.
    pub async fn join_pod(
        &self,
        bin: &Path,
        net: &TestNet,
        gateway: &str,
        (namespace, service, version): (&str, &str, &str),
    ) -> Pod {
        let (code, token, err) = self.cli(
            bin,
            &[
                "token",
                "create",
                "--service",
                service,
                "-n",
                namespace,
                "--ttl",
                "1h",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let (code, bundle, err) = self.cli(bin, &["ca", "show", "--bundle"]);
        assert_eq!(code, 0, "{err}");
        let mut params = BootstrapParams::new(service, version, gateway, self.xds_port);
        params.namespace = namespace.into();
        params.admin_socket = Some(ADMIN_SOCKET.into());
        params.sds = true;
        params.token = Some(token.trim().to_string());
        params.xds_tls = Some(XdsUpstreamTls::new(&bundle, "cluster.local", gateway).unwrap());
        let options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([15006]);
        Pod::start(net, options, UpstreamOptions::new(service, version))
            .await
            .unwrap()
    }
}

impl Drop for WeftServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A failed start must not leave the server running (it would outlive the test, writing to
/// its output).
fn stop_and_panic(child: &mut std::process::Child, message: &str) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!("{message}");
}
