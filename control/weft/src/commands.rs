//! Running each subcommand.

use crate::cli::{Cli, Command, Output};
use crate::client::{decode, Client, Failure};
use crate::offline::{load_offline, offline_set, read_input};
use crate::output::{print, rfc3339, table, text};
use crate::Exit;
use serde_json::json;
use std::path::Path;
use weft_api::types::{Operation, Outcome, RecordSummary, Status, Validated};

pub fn run(cli: Cli, explicit: &crate::config::Given) -> Exit {
    let format = cli.output;
    let given = crate::config::Given {
        server: cli.server.clone(),
        token: std::env::var("WEFT_TOKEN").ok().filter(|t| !t.is_empty()),
        token_file: cli.token_file.clone(),
        ca_file: cli.ca_file.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
    };
    let result = match cli.command {
        Command::Serve {
            data_dir,
            api,
            log_level,
            workers,
            xds,
            store,
            replica,
        } => return crate::serve::run(&data_dir, api, log_level, workers, xds, store, *replica),
        Command::Store(command) => crate::store_cmd::run(command, format),
        Command::Etcd(command) => crate::etcd_cmd::run(command, format),
        Command::Bootstrap(args) => return crate::bootstrap::run(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "weft", &mut std::io::stdout());
            Ok(())
        }
        Command::Validate {
            file,
            offline: true,
        } => validate_offline(&file, format),
        Command::Config(command) => crate::config::run(command, explicit, format),
        Command::Check(args) => {
            let client = || connection(given).and_then(|c| Client::new(&c));
            match crate::check::run(&args, format, client) {
                Ok(exit) => return exit,
                Err(f) => Err(f),
            }
        }
        Command::Module(command) => crate::module_cmd::run(
            command,
            || connection(given).and_then(|connection| Client::new(&connection)),
            format,
        ),
        command => connection(given).and_then(|connection| {
            let client = Client::new(&connection)?;
            remote(&client, command, format, &cli.xds)
        }),
    };
    match result {
        Ok(()) => Exit::Ok,
        Err(f) => {
            eprintln!("error: {}", f.message);
            for d in &f.details {
                eprintln!("  {}: {}: {}", d.document, d.field, d.reason);
            }
            f.exit
        }
    }
}

/// Flags and environment variables over the current context (`weft config`).
fn connection(given: crate::config::Given) -> Result<crate::client::Connection, Failure> {
    let config = match crate::config::path() {
        Some(path) => crate::config::load(&path)?,
        None => crate::config::Config::default(),
    };
    Ok(crate::config::resolve(&given, &config))
}

/// `--author`: only a comment beside the authenticated principal in the history.
fn author(a: Option<String>) -> Option<String> {
    a
}

fn dry(dry_run: bool) -> &'static str {
    if dry_run {
        "?dryRun=true"
    } else {
        ""
    }
}

fn remote(
    client: &Client,
    command: Command,
    format: Output,
    xds: &crate::sidecars::XdsClientArgs,
) -> Result<(), Failure> {
    match command {
        Command::Apply {
            file,
            author: who,
            dry_run,
            expect_version,
        } => {
            let body = read_input(&file)?;
            let mut query = vec![];
            if dry_run {
                query.push("dryRun=true".to_string());
            }
            if let Some(v) = expect_version {
                query.push(format!("expectVersion={v}"));
            }
            let path = format!(
                "/api/v1/apply{}{}",
                if query.is_empty() { "" } else { "?" },
                query.join("&")
            );
            let out = client.post(&path, Some(&body), author(who).as_deref())?;
            let outcome: Outcome = decode(&out)?;
            print(format, &out, |_| outcome_table(&outcome, dry_run));
            if !dry_run {
                crate::sidecars::wait_for_acks(client, xds, &out)?;
            }
        }
        Command::Diff { file } => {
            let out = client.post("/api/v1/diff", Some(&read_input(&file)?), None)?;
            let outcome: Outcome = decode(&out)?;
            print(format, &out, |_| outcome_table(&outcome, true));
        }
        Command::Validate { file, .. } => {
            let out = client.post("/api/v1/validate", Some(&read_input(&file)?), None)?;
            let validated: Validated = decode(&out)?;
            print(format, &out, |_| {
                format!("valid: {} document(s)\n", validated.documents.len())
            });
        }
        Command::Get {
            kind,
            name,
            namespace,
        } => get(client, kind, name, namespace, format)?,
        Command::Delete {
            kind,
            name,
            namespace,
            author: who,
            dry_run,
        } => {
            let path = format!("/api/v1/policies/{kind}/{namespace}/{name}{}", dry(dry_run));
            let out = client.delete(&path, author(who).as_deref())?;
            let outcome: Outcome = decode(&out)?;
            print(format, &out, |_| outcome_table(&outcome, dry_run));
        }
        Command::Rollback {
            target,
            author: who,
            dry_run,
        } => {
            let out = client.post(
                &format!("/api/v1/rollback/{target}{}", dry(dry_run)),
                None,
                author(who).as_deref(),
            )?;
            let outcome: Outcome = decode(&out)?;
            print(format, &out, |_| outcome_table(&outcome, dry_run));
        }
        Command::History { at: None } => {
            let out = client.get("/api/v1/history")?;
            let history: Vec<RecordSummary> = decode(&out)?;
            print(format, &out, |_| history_table(&history));
        }
        Command::History { at: Some(v) } => {
            let out = client.get(&format!("/api/v1/history/{v}"))?;
            // The table form is the version's documents as YAML (secrets redacted by the API).
            print(format, &out, |record| {
                let documents = &record["documents"];
                serde_norway::to_string(documents).unwrap_or_default()
            });
        }
        Command::Status => {
            let out = client.get("/api/v1/status")?;
            let status: Status = decode(&out)?;
            print(format, &out, |_| {
                format!(
                    "server: {} {}\npolicyVersion: {}\ndocuments: {}\nsidecars: {}\n",
                    status.server,
                    status.server_version,
                    status.policy_version,
                    status.documents,
                    status.sidecars
                )
            });
            crate::sidecars::print_sidecars(client, xds, format)?;
            crate::replica::print_replicas(client, format)?;
        }
        Command::Token(command) => crate::identity::token(client, command, format)?,
        Command::ExplainToken(args) => crate::explain::explain_token(client, args, format)?,
        Command::Ca(command) => crate::identity::ca(client, command, format)?,
        Command::Rollout(command) => crate::rollout::run(client, command, format)?,
        Command::Operator(command) => crate::operator::operator(client, command, format)?,
        Command::Audit(args) => crate::operator::audit(client, args, format)?,
        Command::Suggest(crate::cli::SuggestCommand::Authz(args)) => {
            crate::telemetry::suggest_authz(client, &args, format)?;
        }
        Command::Serve { .. }
        | Command::Completions { .. }
        | Command::Bootstrap(_)
        | Command::Store(_)
        | Command::Etcd(_)
        | Command::Check(_)
        | Command::Module(_)
        | Command::Config(_) => {}
    }
    Ok(())
}

fn get(
    client: &Client,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    format: Output,
) -> Result<(), Failure> {
    match (kind, name) {
        (Some(kind), Some(name)) => {
            let ns = namespace.unwrap_or_else(|| "default".into());
            let doc = client.get(&format!("/api/v1/policies/{kind}/{ns}/{name}"))?;
            // A single document reads best as the YAML it was written in.
            print(format, &doc, |v| {
                serde_norway::to_string(v).unwrap_or_default()
            });
        }
        (kind, None) => {
            let mut query = Vec::new();
            if let Some(k) = kind {
                query.push(format!("kind={k}"));
            }
            if let Some(n) = namespace {
                query.push(format!("namespace={n}"));
            }
            let path = format!(
                "/api/v1/policies{}{}",
                if query.is_empty() { "" } else { "?" },
                query.join("&")
            );
            let docs = client.get(&path)?;
            print(format, &docs, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
                        vec![
                            text(&d["kind"]),
                            ns.to_string(),
                            text(&d["metadata"]["name"]),
                            text(&d["spec"]["target"]["service"]),
                        ]
                    })
                    .collect();
                table(&["KIND", "NAMESPACE", "NAME", "TARGET"], &rows)
            });
        }
        (None, Some(_)) => {
            return Err(Failure::new(
                Exit::Usage,
                "a name needs a kind: weft get KIND NAME",
            ))
        }
    }
    Ok(())
}

fn outcome_table(outcome: &Outcome, dry_run: bool) -> String {
    let state = match (dry_run, outcome.created) {
        (true, _) => "planned on",
        (false, true) => "created",
        (false, false) => "unchanged at",
    };
    let mut out = format!("{state} version {}\n", outcome.version);
    let docs = &outcome.documents;
    let mut rows = Vec::new();
    for (change, names) in [
        ("added", &docs.added),
        ("changed", &docs.changed),
        ("removed", &docs.removed),
    ] {
        for name in names {
            rows.push(vec![change.to_string(), name.clone()]);
        }
    }
    if !rows.is_empty() {
        out.push_str(&table(&["DOCUMENT", "NAME"], &rows));
    }
    let sidecars: Vec<Vec<String>> = outcome
        .sidecars
        .iter()
        .map(|s| {
            let id = &s.sidecar;
            vec![
                format!("{}/{}/{}", id.namespace, id.service, id.version),
                s.change.clone(),
                s.filters.join(","),
            ]
        })
        .collect();
    if !sidecars.is_empty() {
        out.push_str(&table(&["SIDECAR", "CHANGE", "FILTERS"], &sidecars));
    }
    out
}

fn history_table(history: &[RecordSummary]) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            let op = match &h.operation {
                Operation::Rollback { to } => format!("rollback to {to}"),
                Operation::Delete { document } => format!("delete {document}"),
                Operation::Apply => "apply".to_string(),
            };
            let d = &h.diff;
            vec![
                h.version.to_string(),
                rfc3339(h.time_unix_ms),
                h.author.clone(),
                op,
                format!(
                    "+{} ~{} -{}",
                    d.added.len(),
                    d.changed.len(),
                    d.removed.len()
                ),
            ]
        })
        .collect();
    table(
        &["VERSION", "TIME", "AUTHOR", "OPERATION", "CHANGES"],
        &rows,
    )
}

/// Validation without a server: each document, then the references among the file's own
/// documents, then compilation and the filters' parsers.
fn validate_offline(file: &Path, format: Output) -> Result<(), Failure> {
    let input = read_input(file)?;
    let docs = load_offline(&input)?;
    offline_set(docs.clone())?;
    let keys: Vec<String> = docs.iter().map(|d| d.key().to_string()).collect();
    let out = json!({"valid": true, "documents": keys});
    print(format, &out, |_| {
        format!("valid: {} document(s) (offline)\n", keys.len())
    });
    Ok(())
}
