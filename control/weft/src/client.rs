//! A small blocking HTTP client for the REST API: HTTPS verified against the CA bundle given
//! (rustls), or plain HTTP to a development server; the operator token in every request.

use crate::Exit;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use weft_api::types::ErrorBody;
use weft_policy::FieldError;

/// Why a command failed: the exit code, a message and the server's field errors.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub details: Vec<FieldError>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Bearer <token>`.
    authorization: Option<String>,
}

/// How to reach and authenticate to the server.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub server: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// An operator client certificate (PEM) and its key, instead of a token.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Client {
    pub fn new(connection: &Connection) -> Result<Self, Failure> {
        let server = connection.server.trim_end_matches('/');
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("https://{server}")
        };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)));
        if let Some(path) = &connection.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::new(Exit::Usage, format!("--ca-file {}: {e}", path.display()))
            })?;
            let roots = certificates(&pem, "--ca-file", path)?;
            let mut tls = ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)));
            if let (Some(cert), Some(key)) = (&connection.client_cert, &connection.client_key) {
                let read = |what: &str, path: &PathBuf| {
                    std::fs::read(path).map_err(|e| {
                        Failure::new(Exit::Usage, format!("{what} {}: {e}", path.display()))
                    })
                };
                let chain = certificates(&read("--client-cert", cert)?, "--client-cert", cert)?;
                let key =
                    ureq::tls::PrivateKey::from_pem(&read("--client-key", key)?).map_err(|e| {
                        Failure::new(Exit::Usage, format!("--client-key {}: {e}", key.display()))
                    })?;
                tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
            }
            config = config.tls_config(tls.build());
        } else if base.starts_with("https://") {
            return Err(Failure::new(
                Exit::Usage,
                format!("{base} is https: give the CA bundle that signs its certificate with --ca-file or WEFT_CA_FILE (`<data-dir>/ca-bundle.pem`, `weft ca show --bundle`)"),
            ));
        }
        let token = match (&connection.token, &connection.token_file) {
            (Some(token), _) => Some(token.trim().to_string()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        Failure::new(Exit::Usage, format!("token file {}: {e}", path.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        Ok(Self {
            base,
            agent: ureq::Agent::new_with_config(config.build()),
            authorization: token
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
        })
    }

    fn authed<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => req.header("authorization", value),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.finish(self.authed(self.agent.get(self.url(path))).call())
    }

    pub fn post(
        &self,
        path: &str,
        body: Option<&[u8]>,
        author: Option<&str>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .authed(self.agent.post(self.url(path)))
            .header("content-type", "application/yaml");
        if let Some(a) = author {
            req = req.header("x-weft-author", a);
        }
        self.finish(match body {
            Some(b) => req.send(b),
            None => req.send_empty(),
        })
    }

    /// POST a JSON body.
    pub fn post_json(&self, path: &str, body: &[u8]) -> Result<Value, Failure> {
        let req = self
            .authed(self.agent.post(self.url(path)))
            .header("content-type", "application/json");
        self.finish(req.send(body))
    }

    pub fn delete(&self, path: &str, author: Option<&str>) -> Result<Value, Failure> {
        let mut req = self.authed(self.agent.delete(self.url(path)));
        if let Some(a) = author {
            req = req.header("x-weft-author", a);
        }
        self.finish(req.call())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Failure> {
        let mut resp = result
            .map_err(|e| Failure::new(Exit::Server, format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| Failure::new(Exit::Server, format!("reading the response: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let exit = match status {
            401 | 403 => Exit::Denied,
            404 => Exit::NotFound,
            409 => Exit::Conflict,
            400 | 413 | 422 => Exit::Invalid,
            _ => Exit::Server,
        };
        let (message, details) = match serde_json::from_value::<ErrorBody>(value.clone()) {
            Ok(body) => (body.error, body.details),
            Err(_) => (format!("HTTP {status}: {value}"), Vec::new()),
        };
        Err(Failure {
            exit,
            message,
            details,
        })
    }
}

/// The certificates of a PEM file (at least one).
fn certificates(
    pem: &[u8],
    what: &str,
    path: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, Failure> {
    let certs = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(Exit::Usage, format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            format!("{what} {}: no certificate in it", path.display()),
        ));
    }
    Ok(certs)
}

/// A 2xx body read as its contract type; a body that is not one is the server's fault.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Failure> {
    T::deserialize(value).map_err(|e| {
        Failure::new(
            Exit::Server,
            format!("the server's answer does not match the API: {e}"),
        )
    })
}
