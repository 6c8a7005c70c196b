//! `shoal users add|list|delete`: SCRAM credentials straight in the metadata store.
//!
//! Works with no agent running, so the first administrator can be created before any
//! listener requires authentication; agents read credentials from the store at each
//! login, so a change applies to the next authentication everywhere. The password is
//! read from `--password-file` (its first line) or one line of standard input, salted
//! here, and only the derived keys are stored. With a running agent, Kafka's own
//! tools (`kafka-configs --alter --entity-type users ...`) do the same over the wire.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_agent::security::scram;
use shoal_meta::{MetaStore, ScramMechanism};

use crate::stores;

#[derive(Args)]
pub struct UsersCmd {
    /// Metadata store (as `shoal agent --metadata`): etcd://host:2379[/prefix] or
    /// sqlite:///path/to/file.db. Takes precedence over --data-dir.
    #[arg(long, env = "SHOAL_METADATA", global = true)]
    metadata: Option<String>,
    /// A playground's data directory: its metadata.db is used (and created if missing).
    #[arg(
        long,
        env = "SHOAL_DATA_DIR",
        default_value = "./shoal-data",
        global = true
    )]
    data_dir: PathBuf,
    /// TLS and login for a secured etcd (as `shoal agent`).
    #[command(flatten)]
    etcd: stores::EtcdSecurity,
    #[command(subcommand)]
    action: UsersAction,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Adds a user's SCRAM credentials for the given mechanisms, replacing any the user
    /// has for them (a new password).
    Add {
        /// The user name (the principal is User:NAME).
        name: String,
        /// SCRAM-SHA-256, SCRAM-SHA-512, or both separated by a comma. PLAIN logins
        /// check against whichever the user has.
        #[arg(long, value_delimiter = ',', default_value = "SCRAM-SHA-256,SCRAM-SHA-512", value_parser = parse_mechanism)]
        mechanism: Vec<ScramMechanism>,
        /// PBKDF2 iterations, 4096 to 16384 (Kafka's limits).
        #[arg(long, default_value_t = scram::DEFAULT_ITERATIONS)]
        iterations: i32,
        /// File whose first line is the password; without it, one line is read from
        /// standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Lists users with their mechanisms and iteration counts.
    List,
    /// Deletes a user's credentials: all of them, or those of the given mechanisms.
    Delete {
        name: String,
        #[arg(long, value_delimiter = ',', value_parser = parse_mechanism)]
        mechanism: Vec<ScramMechanism>,
    },
}

fn parse_mechanism(s: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::from_name(s)
        .ok_or_else(|| format!("unknown SCRAM mechanism '{s}'; use SCRAM-SHA-256 or SCRAM-SHA-512"))
}

pub async fn run(cmd: UsersCmd) -> anyhow::Result<()> {
    let meta = match &cmd.metadata {
        Some(url) => stores::metadata(url, &cmd.etcd).await?,
        None => {
            std::fs::create_dir_all(&cmd.data_dir)
                .with_context(|| format!("create the data directory {}", cmd.data_dir.display()))?;
            stores::sqlite(&cmd.data_dir.join("metadata.db"))?
        }
    };
    match cmd.action {
        UsersAction::Add {
            name,
            mechanism,
            iterations,
            password_file,
        } => {
            add(
                meta,
                &name,
                &mechanism,
                iterations,
                password_file.as_deref(),
            )
            .await
        }
        UsersAction::List => list(meta).await,
        UsersAction::Delete { name, mechanism } => delete(meta, &name, &mechanism).await,
    }
}

/// The first line of `file`, or of standard input, without its line ending.
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let mut line = String::new();
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the password file {}", path.display()))?;
            line = text.lines().next().unwrap_or_default().to_string();
        }
        None => {
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read the password from standard input")?;
        }
    }
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

async fn add(
    meta: Arc<dyn MetaStore>,
    name: &str,
    mechanisms: &[ScramMechanism],
    iterations: i32,
    password_file: Option<&Path>,
) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("the user name is empty");
    }
    if let Some(why) = scram::check_iterations(iterations) {
        bail!(
            "{why}: --iterations must be between {} and {}",
            scram::MIN_ITERATIONS,
            scram::MAX_ITERATIONS
        );
    }
    let password = read_password(password_file)?;
    let mut creds = Vec::new();
    for &m in mechanisms {
        if creds
            .iter()
            .any(|c: &shoal_meta::ScramCredential| c.mechanism == m)
        {
            continue;
        }
        creds.push(
            scram::new_credential(name, m, &password, iterations)
                .map_err(|e| anyhow::anyhow!("draw a random salt: {e}"))?,
        );
    }
    meta.alter_scram_credentials(&creds, &[])
        .await
        .with_context(|| format!("store the credentials of user '{name}'"))?;
    let names: Vec<&str> = creds.iter().map(|c| c.mechanism.name()).collect();
    println!(
        "user '{name}': {} credentials stored ({iterations} iterations)",
        names.join(", ")
    );
    Ok(())
}

async fn list(meta: Arc<dyn MetaStore>) -> anyhow::Result<()> {
    let creds = meta
        .scram_credentials(None)
        .await
        .context("read SCRAM credentials")?;
    if creds.is_empty() {
        eprintln!("no users have SCRAM credentials");
    }
    for c in creds {
        println!("{}\t{}\titerations={}", c.user, c.mechanism, c.iterations);
    }
    Ok(())
}

async fn delete(
    meta: Arc<dyn MetaStore>,
    name: &str,
    mechanisms: &[ScramMechanism],
) -> anyhow::Result<()> {
    let existing = meta
        .scram_credentials(Some(name))
        .await
        .context("read SCRAM credentials")?;
    let mut gone = Vec::new();
    for c in &existing {
        if (mechanisms.is_empty() || mechanisms.contains(&c.mechanism))
            && !gone.iter().any(|(_, m)| *m == c.mechanism)
        {
            gone.push((name.to_string(), c.mechanism));
        }
    }
    if gone.is_empty() {
        bail!("user '{name}' has no such SCRAM credentials");
    }
    meta.alter_scram_credentials(&[], &gone)
        .await
        .with_context(|| format!("delete the credentials of user '{name}'"))?;
    let names: Vec<&str> = gone.iter().map(|(_, m)| m.name()).collect();
    println!("user '{name}': {} credentials deleted", names.join(", "));
    Ok(())
}
