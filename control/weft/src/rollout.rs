//! `weft rollout status [-w] | events | promote | abort | pause | resume`.

use std::time::Duration;

use serde_json::Value;
use weft_rollout::{Event, Status};

use crate::client::{decode, Client, Failure};
use crate::output::{self, Output};

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Every rollout (or one): phase, step, weight, each check's value vs its threshold.
    Status {
        /// A rollout's name; all when absent.
        name: Option<String>,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Redraw every second until the rollouts shown are finished.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// The rollout's events: starts, checks, steps, rollbacks, promotions, commands.
    Events {
        name: String,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// The last N events (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Promote the canary now (weight 100, stable := canary).
    Promote(Target),
    /// Roll back now (canary weight 0).
    Abort(Target),
    /// Hold the current step (checks stop until resume).
    Pause(Target),
    /// Continue a paused rollout.
    Resume(Target),
}

#[derive(Debug, clap::Args)]
pub struct Target {
    name: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
}

pub fn run(client: &Client, command: RolloutCommand, format: Output) -> Result<(), Failure> {
    let (verb, target) = match command {
        RolloutCommand::Status {
            name,
            namespace,
            watch,
        } => return status(client, name.as_deref(), &namespace, watch, format),
        RolloutCommand::Events {
            name,
            namespace,
            limit,
        } => {
            let body = client.get(&format!(
                "/api/v1/rollouts/{namespace}/{name}/events?limit={limit}"
            ))?;
            output::print(format, &body, |v| events_table(v).unwrap_or_default());
            return Ok(());
        }
        RolloutCommand::Promote(t) => ("promote", t),
        RolloutCommand::Abort(t) => ("abort", t),
        RolloutCommand::Pause(t) => ("pause", t),
        RolloutCommand::Resume(t) => ("resume", t),
    };
    let body = client.post(
        &format!(
            "/api/v1/rollouts/{}/{}/{verb}",
            target.namespace, target.name
        ),
        None,
        None,
    )?;
    output::print(format, &body, |v| {
        decode::<Status>(v).map(|s| render(&s)).unwrap_or_default()
    });
    Ok(())
}

fn status(
    client: &Client,
    name: Option<&str>,
    namespace: &str,
    watch: bool,
    format: Output,
) -> Result<(), Failure> {
    loop {
        let list: Vec<Status> = match name {
            Some(name) => vec![decode(
                &client.get(&format!("/api/v1/rollouts/{namespace}/{name}"))?,
            )?],
            None => decode(&client.get("/api/v1/rollouts")?["rollouts"])?,
        };
        if watch && format == Output::Table {
            // Clear the screen and go home: a live display.
            print!("\x1b[2J\x1b[H");
        }
        let value = serde_json::to_value(&list).unwrap_or(Value::Null);
        output::print(format, &value, |_| {
            if list.is_empty() {
                "no rollouts\n".to_string()
            } else {
                list.iter().map(render).collect()
            }
        });
        let finished = list
            .iter()
            .all(|s| matches!(s.phase.as_str(), "Promoted" | "RolledBack" | "Aborted"));
        if !watch || finished {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One rollout: a headline, then each check of the last interval.
fn render(s: &Status) -> String {
    let next = s
        .next_check_in_ms
        .map(|ms| format!("  next check in {:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let mut out = format!(
        "{}/{}  {} {} -> {}  {}  step {}/{}  weight {}%  failed checks {}/{}{next}\n",
        s.namespace,
        s.name,
        s.service,
        s.stable,
        s.canary,
        s.phase,
        s.step,
        s.steps,
        f64::from(s.weight_bp) / 100.0,
        s.failed_checks,
        s.failure_threshold,
    );
    if let Some(a) = &s.last_analysis {
        out.push_str(&format!(
            "  last interval: {:?}, canary {} requests, stable {}{}\n",
            a.verdict,
            a.canary_requests,
            a.stable_requests,
            a.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        let rows: Vec<Vec<String>> = a
            .checks
            .iter()
            .map(|c| {
                let op = if c.name.starts_with("latency") {
                    "<="
                } else {
                    ">="
                };
                vec![
                    format!("  {}", c.name),
                    c.value.to_string(),
                    format!("{op} {}", c.threshold),
                    if c.passed { "ok" } else { "FAIL" }.to_string(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&output::table(
                &["  CHECK", "VALUE", "THRESHOLD", ""],
                &rows,
            ));
        }
    }
    out
}

fn events_table(v: &Value) -> Result<String, Failure> {
    let events: Vec<Event> = decode(&v["events"])?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                output::rfc3339(e.time_unix_ms),
                format!("{:?}", e.kind),
                format!("{}%", f64::from(e.weight_bp) / 100.0),
                e.version.map(|v| v.to_string()).unwrap_or_default(),
                e.message.clone(),
            ]
        })
        .collect();
    Ok(output::table(
        &["TIME", "EVENT", "WEIGHT", "VERSION", "MESSAGE"],
        &rows,
    ))
}
