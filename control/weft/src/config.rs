//! CLI contexts, like a kubeconfig: `~/.config/weft/config.yaml` (or `WEFT_CONFIG`) holds named
//! contexts (server URL, CA bundle, token file) and the current one. Flags and environment
//! variables (`WEFT_SERVER`, `WEFT_TOKEN`/`WEFT_TOKEN_FILE`, `WEFT_CA_FILE`) override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::{Connection, Failure};
use crate::output::{table, Output};
use crate::Exit;

/// Without any flag, variable or context.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:7070";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// `weft config ...`
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Create or update a context with the global `--server`, `--ca-file`, `--token-file`,
    /// `--client-cert`, `--client-key` given on this command line (environment variables are
    /// not stored).
    SetContext {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Make NAME the current context.
    UseContext {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Print the current context's name.
    CurrentContext,
    /// List the contexts (`*` marks the current one).
    GetContexts,
}

/// `WEFT_CONFIG`, else `$XDG_CONFIG_HOME/weft/config.yaml`, else `~/.config/weft/config.yaml`.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEFT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("weft/config.yaml"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/weft/config.yaml"))
}

/// The config at `path`; an absent file is an empty config.
pub fn load(path: &Path) -> Result<Config, Failure> {
    match std::fs::read(path) {
        Ok(bytes) => serde_norway::from_slice(&bytes)
            .map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Failure::new(
            Exit::Usage,
            format!("{}: {e}", path.display()),
        )),
    }
}

fn save(path: &Path, config: &Config) -> Result<(), Failure> {
    let fail = |e: String| Failure::new(Exit::Usage, format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let text = serde_norway::to_string(config).map_err(|e| fail(e.to_string()))?;
    weft_store::private::write_atomic(path, text.as_bytes()).map_err(|e| fail(e.to_string()))
}

impl Config {
    pub fn current(&self) -> Option<&Context> {
        let name = self.current_context.as_deref()?;
        self.contexts.iter().find(|c| c.name == name)
    }
}

/// What the command line and the environment said (None: not given).
#[derive(Debug, Default, Clone)]
pub struct Given {
    pub server: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Flags and variables first, then the current context, then the default server.
pub fn resolve(given: &Given, config: &Config) -> Connection {
    let context = config.current().cloned().unwrap_or_default();
    // A credential given on the command line or environment replaces the context's as a
    // whole (a raw WEFT_TOKEN beats a context's token file or certificate).
    let (token, token_file, client_cert, client_key) =
        match (&given.token, &given.token_file, &given.client_cert) {
            (None, None, None) => (
                None,
                context.token_file,
                context.client_cert_file,
                context.client_key_file,
            ),
            (token, file, cert) => (
                token.clone(),
                file.clone(),
                cert.clone(),
                given.client_key.clone(),
            ),
        };
    Connection {
        server: given
            .server
            .clone()
            .or(context.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
        token,
        token_file,
        ca_file: given.ca_file.clone().or(context.ca_file),
        client_cert,
        client_key,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `weft config ...`; `explicit` holds only what the command line gave (not the environment).
pub fn run(command: ConfigCommand, explicit: &Given, format: Output) -> Result<(), Failure> {
    let path = path()
        .ok_or_else(|| Failure::new(Exit::Usage, "no config path: set WEFT_CONFIG or HOME"))?;
    let mut config = load(&path)?;
    match command {
        ConfigCommand::SetContext { name } => {
            if name.is_empty() || name.len() > 253 {
                return Err(Failure::new(
                    Exit::Usage,
                    "context name: 1 to 253 characters",
                ));
            }
            let index = match config.contexts.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    config.contexts.push(Context {
                        name: name.clone(),
                        ..Context::default()
                    });
                    config.contexts.len() - 1
                }
            };
            let context = &mut config.contexts[index];
            if let Some(server) = &explicit.server {
                context.server = Some(server.clone());
            }
            if let Some(file) = &explicit.ca_file {
                context.ca_file = Some(absolute(file));
            }
            if let Some(file) = &explicit.token_file {
                context.token_file = Some(absolute(file));
            }
            if let Some(file) = &explicit.client_cert {
                context.client_cert_file = Some(absolute(file));
            }
            if let Some(file) = &explicit.client_key {
                context.client_key_file = Some(absolute(file));
            }
            if config.current_context.is_none() {
                config.current_context = Some(name.clone());
            }
            save(&path, &config)?;
            println!("context {name:?} set in {}", path.display());
        }
        ConfigCommand::UseContext { name } => {
            if !config.contexts.iter().any(|c| c.name == name) {
                return Err(Failure::new(
                    Exit::NotFound,
                    format!("no context {name:?} in {}", path.display()),
                ));
            }
            config.current_context = Some(name.clone());
            save(&path, &config)?;
            println!("switched to context {name:?}");
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(name) => println!("{name}"),
            None => return Err(Failure::new(Exit::NotFound, "no current context")),
        },
        ConfigCommand::GetContexts => {
            let value = serde_json::to_value(&config).unwrap_or_default();
            crate::output::print(format, &value, |_| {
                let rows: Vec<Vec<String>> = config
                    .contexts
                    .iter()
                    .map(|c| {
                        let show = |p: &Option<PathBuf>| {
                            p.as_ref()
                                .map_or_else(String::new, |p| p.display().to_string())
                        };
                        vec![
                            if config.current_context.as_deref() == Some(&c.name) {
                                "*".into()
                            } else {
                                String::new()
                            },
                            c.name.clone(),
                            c.server.clone().unwrap_or_default(),
                            show(&c.ca_file),
                            show(&c.token_file),
                        ]
                    })
                    .collect();
                table(
                    &["CURRENT", "NAME", "SERVER", "CA FILE", "TOKEN FILE"],
                    &rows,
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str, server: &str) -> Context {
        Context {
            name: name.into(),
            server: Some(server.into()),
            ca_file: Some("/ca.pem".into()),
            token_file: Some("/token".into()),
            client_cert_file: None,
            client_key_file: None,
        }
    }

    #[test]
    fn flags_and_variables_override_the_current_context() {
        let config = Config {
            current_context: Some("prod".into()),
            contexts: vec![
                context("dev", "https://dev:7070"),
                context("prod", "https://prod:7070"),
            ],
        };
        let c = resolve(&Given::default(), &config);
        assert_eq!(c.server, "https://prod:7070");
        assert_eq!(c.token_file, Some("/token".into()));
        assert_eq!(c.ca_file, Some("/ca.pem".into()));
        let given = Given {
            server: Some("https://other:1".into()),
            token: Some("weft_op_x".into()),
            ..Given::default()
        };
        let c = resolve(&given, &config);
        assert_eq!(c.server, "https://other:1");
        assert_eq!(
            (c.token.as_deref(), c.token_file),
            (Some("weft_op_x"), None)
        );
        assert_eq!(c.ca_file, Some("/ca.pem".into()));
        let none = resolve(&Given::default(), &Config::default());
        assert_eq!(none.server, DEFAULT_SERVER);
    }

    #[test]
    fn the_file_round_trips_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft/config.yaml");
        let config = Config {
            current_context: Some("dev".into()),
            contexts: vec![context("dev", "https://dev:7070")],
        };
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        std::fs::write(&path, "contexts: [{name: a, sever: x}]\n").unwrap();
        assert!(load(&path).is_err());
        assert_eq!(
            load(&dir.path().join("none.yaml")).unwrap(),
            Config::default()
        );
    }
}
