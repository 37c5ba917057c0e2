//! `weft operator create|list|revoke|whoami|renew-cert` and `weft audit`: clients of
//! `/api/v1/operators`, `/api/v1/whoami[/certificate]` and `/api/v1/audit`.

use std::time::Duration;

use crate::client::{decode, Client, Failure};
use crate::output::{print, rfc3339, table, Output};
use crate::Exit;
use weft_api::access::{
    AuditList, CertificateIssued, CreateOperator, OperatorCreated, OperatorList, Role, Whoami,
};

/// `weft operator ...`
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Create an operator and print its token (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// viewer, editor, security-admin or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A namespace an editor may change (repeatable; editors need at least one).
        #[arg(long = "namespace", short = 'n')]
        namespaces: Vec<String>,
        /// Lifetime of the token: 30m, 24h, 90d (at most 366d); no expiry when absent.
        #[arg(long, value_parser = parse_operator_ttl)]
        ttl: Option<Duration>,
        /// Also get a client certificate from the operator CA (7 days; `weft serve --ca`) and
        /// write DIR/cert.pem and DIR/key.pem (0600) for --client-cert / --client-key.
        #[arg(long, value_name = "DIR")]
        cert_out: Option<std::path::PathBuf>,
    },
    /// List operators (never their tokens).
    List,
    /// Revoke an operator: its token is refused from the next request on.
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Who the credential in use is.
    Whoami,
    /// A new client certificate (7 days) for the operator of the credential in use, written to
    /// DIR/cert.pem and DIR/key.pem (0600): renew before the current one expires.
    RenewCert {
        #[arg(long, value_name = "DIR")]
        cert_out: std::path::PathBuf,
    },
}

/// `weft audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only entries of the last 10m, 24h, 7d...
    #[arg(long, value_parser = crate::identity::parse_ttl)]
    pub since: Option<Duration>,
    /// Only entries of this operator (`alice` or `operator:alice`, or `anonymous`).
    #[arg(long)]
    pub principal: Option<String>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("role {text:?}: expected viewer, editor, security-admin or admin"))
}

fn parse_operator_ttl(text: &str) -> Result<Duration, String> {
    let ttl = crate::identity::parse_ttl(text)?;
    if ttl > weft_api::access::operators::MAX_OPERATOR_TTL {
        return Err(format!("{text:?} is longer than the maximum of 366d"));
    }
    Ok(ttl)
}

pub fn operator(client: &Client, command: OperatorCommand, format: Output) -> Result<(), Failure> {
    match command {
        OperatorCommand::Create {
            name,
            role,
            namespaces,
            ttl,
            cert_out,
        } => {
            // Checked before anything is created: the certificate is shown only once.
            if let Some(dir) = &cert_out {
                fresh_cert_dir(dir)?;
            }
            let body = CreateOperator {
                name,
                role,
                namespaces,
                ttl_seconds: ttl.map(|t| t.as_secs()),
                certificate: cert_out.is_some(),
            };
            let body = serde_json::to_vec(&body)
                .map_err(|e| Failure::new(Exit::Usage, format!("operator request: {e}")))?;
            let out = client.post_json("/api/v1/operators", &body)?;
            let created: OperatorCreated = decode(&out)?;
            if let (Some(dir), Some(cert), Some(key)) =
                (&cert_out, &created.cert_pem, &created.key_pem)
            {
                write_cert(dir, cert, key)?;
                eprintln!(
                    "client certificate {} in {}/cert.pem, key in {}/key.pem",
                    created.spiffe_id.as_deref().unwrap_or(""),
                    dir.display(),
                    dir.display()
                );
            }
            match format {
                // The bare token, so `T=$(weft operator create ...)` works.
                Output::Table => println!("{}", created.token),
                _ => print(format, &out, |_| String::new()),
            }
        }
        OperatorCommand::List => {
            let out = client.get("/api/v1/operators")?;
            let list: OperatorList = decode(&out)?;
            let now = std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            print(format, &out, |_| {
                let rows: Vec<Vec<String>> = list
                    .operators
                    .iter()
                    .map(|o| {
                        let state = match (o.revoked_ms, o.expires_ms) {
                            (Some(_), _) => "revoked",
                            (None, Some(exp)) if exp <= now => "expired",
                            _ => "active",
                        };
                        vec![
                            o.name.clone(),
                            o.role.to_string(),
                            o.namespaces.join(","),
                            o.expires_ms.map_or_else(|| "never".into(), rfc3339),
                            state.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ROLE", "NAMESPACES", "EXPIRES", "STATE"], &rows)
            });
        }
        OperatorCommand::Revoke { name } => {
            let out = client.delete(&format!("/api/v1/operators/{name}"), None)?;
            print(format, &out, |_| format!("revoked {name}\n"));
        }
        OperatorCommand::RenewCert { cert_out } => {
            fresh_cert_dir(&cert_out)?;
            let out = client.post_json("/api/v1/whoami/certificate", b"{}")?;
            let issued: CertificateIssued = decode(&out)?;
            write_cert(&cert_out, &issued.cert_pem, &issued.key_pem)?;
            // The key is in the file only, never on the terminal or in a JSON pipeline.
            let mut shown = out.clone();
            if let Some(fields) = shown.as_object_mut() {
                fields.remove("keyPem");
            }
            print(format, &shown, |_| {
                format!(
                    "client certificate {} in {}/cert.pem, key in {}/key.pem\n",
                    issued.spiffe_id,
                    cert_out.display(),
                    cert_out.display()
                )
            });
        }
        OperatorCommand::Whoami => {
            let out = client.get("/api/v1/whoami")?;
            let me: Whoami = decode(&out)?;
            print(format, &out, |_| {
                format!(
                    "{} ({}{})\n",
                    me.name,
                    me.role,
                    if me.namespaces.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", me.namespaces.join(", "))
                    }
                )
            });
        }
    }
    Ok(())
}

/// Refuses a directory that already holds a certificate or key: the key is shown only once,
/// and an old one is never overwritten.
fn fresh_cert_dir(dir: &std::path::Path) -> Result<(), Failure> {
    for file in ["cert.pem", "key.pem"] {
        if dir.join(file).exists() {
            return Err(Failure::new(
                Exit::Usage,
                format!("{} exists: give a new directory", dir.join(file).display()),
            ));
        }
    }
    Ok(())
}

/// DIR/cert.pem (0644) and DIR/key.pem (0600), created new.
fn write_cert(dir: &std::path::Path, cert: &str, key: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |path: &std::path::Path, e: std::io::Error| {
        Failure::new(Exit::Usage, format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    for (name, text, mode) in [("cert.pem", cert, 0o644), ("key.pem", key, 0o600)] {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| fail(&path, e))?;
    }
    Ok(())
}

pub fn audit(client: &Client, args: AuditArgs, format: Output) -> Result<(), Failure> {
    let mut query = Vec::new();
    if let Some(since) = args.since {
        let now = std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let since = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        query.push(format!("since={}", now.saturating_sub(since)));
    }
    if let Some(p) = &args.principal {
        let safe = p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !safe {
            return Err(Failure::new(
                Exit::Usage,
                format!("--principal {p:?}: not an operator name"),
            ));
        }
        query.push(format!("principal={p}"));
    }
    let path = if query.is_empty() {
        "/api/v1/audit".to_string()
    } else {
        format!("/api/v1/audit?{}", query.join("&"))
    };
    let out = client.get(&path)?;
    let list: AuditList = decode(&out)?;
    print(format, &out, |_| {
        let rows: Vec<Vec<String>> = list
            .entries
            .iter()
            .map(|e| {
                vec![
                    rfc3339(e.time_unix_ms),
                    e.principal.clone(),
                    e.source.clone(),
                    e.route.clone(),
                    format!("{} {}", e.status, e.outcome),
                    match (&e.version, &e.reason) {
                        (Some(v), _) => format!("version {v}"),
                        (None, Some(r)) => r.clone(),
                        (None, None) => String::new(),
                    },
                ]
            })
            .collect();
        table(
            &[
                "TIME",
                "PRINCIPAL",
                "SOURCE",
                "ROUTE",
                "OUTCOME",
                "VERSION/REASON",
            ],
            &rows,
        )
    });
    Ok(())
}
