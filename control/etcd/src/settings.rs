//! How a replica reaches etcd: endpoints, key prefix, TLS, user, deadlines.

use std::path::PathBuf;
use std::time::Duration;
use weft_store::StoreError;

/// TLS to etcd: the CA its server certificates chain to, and optionally a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Everything [`crate::EtcdStore::connect`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Every key lives under it (several meshes can share one etcd).
    pub prefix: String,
    pub tls: EtcdTls,
    /// etcd authentication: user name and password.
    pub user: Option<(String, String)>,
    /// Deadline of one store call.
    pub timeout: Duration,
    /// `/healthz` fails once etcd has not answered for longer than this.
    pub health_bound: Duration,
}

impl EtcdSettings {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/weft".into(),
            tls: EtcdTls::default(),
            user: None,
            timeout: Duration::from_secs(3),
            health_bound: Duration::from_secs(10),
        }
    }

    /// Checks the endpoints' scheme and reads the TLS files; errors name the flag.
    pub(crate) fn connect_options(&self) -> Result<etcd_client::ConnectOptions, StoreError> {
        let bad = |what: String| StoreError::Unavailable(what);
        let mut tls_wanted = false;
        for endpoint in &self.endpoints {
            match endpoint.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => tls_wanted = true,
                Some(("http", rest)) if !rest.is_empty() => {}
                _ => {
                    return Err(bad(format!(
                    "--etcd-endpoints: {endpoint:?} is not http://HOST:PORT or https://HOST:PORT"
                )))
                }
            }
        }
        let mut options = etcd_client::ConnectOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(2), self.timeout)
            // A member that has lost its leader refuses at once ("no leader") instead of
            // queueing the proposal, which it might commit after the caller gave up.
            .with_require_leader(true);
        if let Some((user, password)) = &self.user {
            options = options.with_user(user.clone(), password.clone());
        }
        let has_tls_file = self.tls.ca.is_some() || self.tls.cert.is_some();
        if has_tls_file && !tls_wanted {
            return Err(bad(
                "--etcd-ca/--etcd-cert need https:// endpoints in --etcd-endpoints".into(),
            ));
        }
        if tls_wanted {
            let read = |flag: &str, path: &PathBuf| {
                std::fs::read(path).map_err(|e| bad(format!("{flag} {}: {e}", path.display())))
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.tls.ca {
                tls =
                    tls.ca_certificate(etcd_client::Certificate::from_pem(read("--etcd-ca", ca)?));
            }
            match (&self.tls.cert, &self.tls.key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(etcd_client::Identity::from_pem(
                        read("--etcd-cert", cert)?,
                        read("--etcd-key", key)?,
                    ));
                }
                (None, None) => {}
                _ => return Err(bad("--etcd-cert and --etcd-key go together".into())),
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }
}
