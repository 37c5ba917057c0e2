//! `weft etcd rekey`: the last step of a key-encryption key rotation, run by the operator who
//! holds both key files and reaches etcd (no server involved: the KEKs never cross the
//! network, and it works with every replica stopped). See `docs/operator-access.md`.

use crate::client::Failure;
use crate::output::{print, Output};
use crate::replica::EtcdArgs;
use crate::Exit;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Re-seal every sealed value kept in etcd (the CA's root keys, the join-token secret,
    /// the shared secrets) with --etcd-kek, opening them with it or --etcd-kek-previous.
    /// Each value is rewritten by compare-and-swap (a concurrent change is read again, never
    /// overwritten); values already sealed with --etcd-kek are left; a value neither key
    /// opens stops it, naming the value and the key ids. Prints the counts.
    Rekey(Box<EtcdArgs>),
}

pub fn run(command: EtcdCommand, format: Output) -> Result<(), Failure> {
    let EtcdCommand::Rekey(args) = command;
    let usage = |e: anyhow::Error| Failure::new(Exit::Usage, format!("{e:#}"));
    if args.etcd_endpoints.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "weft etcd rekey needs --etcd-endpoints",
        ));
    }
    let kek = args.kek().map_err(usage)?;
    let settings = args.settings().map_err(usage)?;
    let store = weft_etcd::EtcdStore::connect(settings)
        .map_err(|e| Failure::new(Exit::Server, e.to_string()))?;
    let report = weft_ca::rekey::rekey(&store, &kek).map_err(|e| {
        let exit = match e {
            weft_ca::CaError::Shared(_) | weft_ca::CaError::Contended(_) => Exit::Server,
            _ => Exit::Usage,
        };
        Failure::new(exit, format!("rekey stopped: {e}"))
    })?;
    let json = serde_json::to_value(&report).unwrap_or_default();
    print(format, &json, |_| {
        format!(
            "re-sealed {} value(s) with key-encryption key {}; {} already were ({})\n",
            report.resealed,
            report.kek_id,
            report.current,
            report.documents.join(", ")
        )
    });
    Ok(())
}
