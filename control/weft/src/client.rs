//! A small blocking HTTP client for the REST API (plain HTTP, no TLS stack).

use crate::Exit;
use serde::de::DeserializeOwned;
use serde_json::Value;
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
}

impl Client {
    pub fn new(server: &str) -> Self {
        let server = server.trim_end_matches('/');
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Self {
            base,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.finish(self.agent.get(self.url(path)).call())
    }

    pub fn post(
        &self,
        path: &str,
        body: Option<&[u8]>,
        author: Option<&str>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .agent
            .post(self.url(path))
            .header("content-type", "application/yaml");
        if let Some(a) = author {
            req = req.header("x-weft-author", a);
        }
        self.finish(match body {
            Some(b) => req.send(b),
            None => req.send_empty(),
        })
    }

    pub fn delete(&self, path: &str, author: Option<&str>) -> Result<Value, Failure> {
        let mut req = self.agent.delete(self.url(path));
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

/// A 2xx body read as its contract type; a body that is not one is the server's fault.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Failure> {
    T::deserialize(value).map_err(|e| {
        Failure::new(
            Exit::Server,
            format!("the server's answer does not match the API: {e}"),
        )
    })
}
