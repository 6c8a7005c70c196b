//! Building the metadata store and object store from URLs and paths.
//!
//! Credentials never reach a log line or an error from here: URLs are shown through
//! [`redact_url`], object-store credentials come from the environment and are never
//! formatted, and etcd's password is read from a file into a type whose `Debug` hides it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use object_store::ObjectStore;
use shoal_meta::{EtcdStore, MetaStore, SqliteStore};

pub fn sqlite(path: &Path) -> anyhow::Result<Arc<dyn MetaStore>> {
    let store = SqliteStore::open(path)
        .with_context(|| format!("open the metadata database {}", path.display()))?;
    Ok(Arc::new(store))
}

/// How the agent reaches a secured etcd: TLS files and a user whose password is in a file.
#[derive(clap::Args, Debug, Default)]
pub struct EtcdSecurity {
    /// PEM CA certificate(s) to verify etcd's server certificate with. Giving this,
    /// --etcd-cert or --etcd-key dials etcd over TLS (https); without --etcd-ca the
    /// system's CA roots are trusted.
    #[arg(long, env = "SHOAL_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd's --client-cert-auth (with --etcd-key).
    #[arg(
        long,
        env = "SHOAL_ETCD_CERT",
        value_name = "FILE",
        requires = "etcd_key"
    )]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(
        long,
        env = "SHOAL_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    pub etcd_key: Option<PathBuf>,
    /// etcd user to log in as (etcd with auth enabled); the token is renewed when it
    /// expires.
    #[arg(long, env = "SHOAL_ETCD_USER", requires = "etcd_password_file")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (its first line).
    #[arg(
        long,
        env = "SHOAL_ETCD_PASSWORD_FILE",
        value_name = "FILE",
        requires = "etcd_user"
    )]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdSecurity {
    /// The etcd client settings these flags ask for.
    pub fn options(&self) -> anyhow::Result<shoal_etcd::ConnectOptions> {
        let read = |what: &str, p: &Path| {
            std::fs::read(p).with_context(|| format!("read the {what} file {}", p.display()))
        };
        let mut options = shoal_etcd::ConnectOptions::default();
        if self.etcd_ca.is_some() || self.etcd_cert.is_some() {
            let ca_pem = match &self.etcd_ca {
                Some(p) => Some(read("etcd CA", p)?),
                None => None,
            };
            let identity = match (&self.etcd_cert, &self.etcd_key) {
                (Some(c), Some(k)) => Some((
                    read("etcd client certificate", c)?,
                    read("etcd client key", k)?,
                )),
                _ => None,
            };
            options.tls = Some(shoal_etcd::TlsOptions {
                ca_pem,
                identity,
                domain: None,
            });
        }
        if let (Some(user), Some(file)) = (&self.etcd_user, &self.etcd_password_file) {
            let text = String::from_utf8(read("etcd password", file)?).with_context(|| {
                format!("the etcd password file {} is not UTF-8", file.display())
            })?;
            options.credentials = Some(shoal_etcd::Credentials {
                user: user.clone(),
                password: text.lines().next().unwrap_or("").to_string(),
            });
        }
        Ok(options)
    }
}

/// `sqlite:///path/file.db` (or `sqlite://relative.db`) for one agent;
/// `etcd://host:2379[,host2:2379][/prefix][?max-txn-ops=N]` for a cluster, reached as
/// `etcd` says.
pub async fn metadata(url: &str, etcd: &EtcdSecurity) -> anyhow::Result<Arc<dyn MetaStore>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return sqlite(Path::new(path));
    }
    let shown = redact_url(url);
    if url.starts_with("etcd://") {
        let store = EtcdStore::connect_with(url, etcd.options()?)
            .await
            .with_context(|| format!("open the etcd metadata store {shown}"))?;
        return Ok(Arc::new(store));
    }
    bail!("unknown metadata store '{shown}'; use etcd://host:2379 for a cluster or sqlite:///path/metadata.db for one agent")
}

/// A URL as it may be shown: any `user:password@` replaced by `***@`, and the values of
/// query parameters whose names suggest a secret replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let secretish = [
            "password",
            "secret",
            "token",
            "key",
            "credential",
            "signature",
        ];
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secretish.iter().any(|s| k.to_ascii_lowercase().contains(s)) => {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

pub fn local_dir(dir: &Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the object directory {}", dir.display()))?;
    // fsync objects and their directory: an acknowledged record must survive a power cut,
    // not only a process crash.
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .with_context(|| format!("open the object directory {}", dir.display()))?
        .with_fsync(true);
    Ok(Arc::new(fs))
}

/// `s3://bucket/prefix`, `file:///dir` or `memory://`.
pub fn object_store(url: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("'{url}' names no bucket; use s3://bucket/prefix");
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        let shown = redact_url(url);
        let s3 = builder
            .build()
            .with_context(|| format!("configure S3 for {shown} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for MinIO or R2, AWS_ENDPOINT_URL)"))?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)));
    }
    if let Some(path) = url.strip_prefix("file://") {
        return local_dir(Path::new(path));
    }
    if url == "memory://" {
        return Ok(Arc::new(object_store::memory::InMemory::new()));
    }
    bail!(
        "unknown object store '{}'; use s3://bucket/prefix, file:///dir or memory://",
        redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_carry_no_credentials() {
        assert_eq!(
            redact_url("etcd://shoal:hunter2@10.0.0.1:2379,10.0.0.2:2379/prod?max-txn-ops=256"),
            "etcd://***@10.0.0.1:2379,10.0.0.2:2379/prod?max-txn-ops=256"
        );
        assert_eq!(
            redact_url("s3://bucket/p?access_key_id=AKIA&secret_access_key=abc/def&region=eu"),
            "s3://bucket/p?access_key_id=***&secret_access_key=***&region=eu"
        );
        assert_eq!(redact_url("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(redact_url("memory://"), "memory://");
        let err = object_store("ftp://user:pa55word@host/x").err().unwrap();
        assert!(!format!("{err:#}").contains("pa55word"), "{err:#}");
    }

    #[test]
    fn printed_s3_stores_and_etcd_options_hide_their_secrets() {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key("wJalrXUtnFEMI-very-secret")
            .with_token("session-token-secret")
            .build()
            .unwrap();
        let shown = format!("{s3} {s3:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("session-token-secret"), "{shown}");

        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "etcd-pa55word\n").unwrap();
        let flags = EtcdSecurity {
            etcd_user: Some("shoal".into()),
            etcd_password_file: Some(pw),
            ..EtcdSecurity::default()
        };
        let options = flags.options().unwrap();
        let creds = options.credentials.as_ref().unwrap();
        assert_eq!(creds.password, "etcd-pa55word", "first line, no newline");
        assert!(!format!("{options:?}").contains("pa55word"));
        assert!(options.tls.is_none(), "no TLS flag given");
    }
}
