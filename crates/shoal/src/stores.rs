//! Building the metadata store and object store from URLs and paths.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use object_store::ObjectStore;
use shoal_meta::{EtcdStore, MetaStore, SqliteStore};

pub fn sqlite(path: &Path) -> anyhow::Result<Arc<dyn MetaStore>> {
    let store = SqliteStore::open(path)
        .with_context(|| format!("open the metadata database {}", path.display()))?;
    Ok(Arc::new(store))
}

/// `sqlite:///path/file.db` (or `sqlite://relative.db`) for one agent;
/// `etcd://host:2379[,host2:2379][/prefix][?max-txn-ops=N]` for a cluster.
pub async fn metadata(url: &str) -> anyhow::Result<Arc<dyn MetaStore>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return sqlite(Path::new(path));
    }
    if url.starts_with("etcd://") {
        let store = EtcdStore::connect(url)
            .await
            .with_context(|| format!("open the etcd metadata store {url}"))?;
        return Ok(Arc::new(store));
    }
    bail!("unknown metadata store '{url}'; use etcd://host:2379 for a cluster or sqlite:///path/metadata.db for one agent")
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
        let s3 = builder
            .build()
            .with_context(|| format!("configure S3 for {url} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for MinIO or R2, AWS_ENDPOINT_URL)"))?;
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
    bail!("unknown object store '{url}'; use s3://bucket/prefix, file:///dir or memory://")
}
