//! A faulty [`ObjectStore`] for tests: wraps another store and adds latency, fails the
//! next N calls, applies PUTs but reports them failed, and flips bytes in what GETs
//! return, each switchable while the test runs. In the spirit of object_store's
//! `ThrottledStore` and neon's `UnreliableWrapper`; our own code.
//!
//! Only built for tests (`--features testkit`); never part of an agent. Latency sleeps on
//! tokio's clock, so `#[tokio::test(start_paused = true)]` tests pay no wall time.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Byte flips applied to GETs of one object.
#[derive(Debug, Clone)]
struct Flip {
    /// Absolute byte positions in the object.
    at: Vec<u64>,
    /// GETs still to corrupt; `None`: every one.
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
struct Faults {
    latency: Duration,
    fail_next: u32,
    fail_puts_after_applying: u32,
    flips: HashMap<String, Flip>,
}

/// The wrapper. Share it behind an `Arc` and keep a handle to change its faults.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Mutex<Faults>,
    gets: AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected failure: {what}").into(),
    }
}

impl FaultyStore {
    /// A wrapper that passes everything through until told otherwise.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            faults: Mutex::new(Faults::default()),
            gets: AtomicU64::new(0),
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call waits this long first (on tokio's clock).
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// The next `n` calls (of any kind) fail without reaching the inner store.
    pub fn fail_next(&self, n: u32) {
        self.faults().fail_next = n;
    }

    /// The next `n` PUTs are written to the inner store and then reported failed: the
    /// "applied but reported failed" outcome of a timeout after the write landed.
    pub fn fail_puts_after_applying(&self, n: u32) {
        self.faults().fail_puts_after_applying = n;
    }

    /// GETs of `key` return its byte `at` inverted (when the range covers it): every GET,
    /// or only the next `times`.
    pub fn corrupt_byte(&self, key: &str, at: u64, times: Option<u32>) {
        let mut f = self.faults();
        let flip = f.flips.entry(key.to_string()).or_insert(Flip {
            at: Vec::new(),
            remaining: times,
        });
        flip.at.push(at);
        flip.remaining = times;
    }

    /// GETs of `key` return its true bytes again (the object was "repaired").
    pub fn repair(&self, key: &str) {
        self.faults().flips.remove(key);
    }

    /// GET requests that reached the wrapper (ranges included).
    pub fn gets(&self) -> u64 {
        self.gets.load(Relaxed)
    }

    /// Waits the latency, then fails if a failure is due.
    async fn enter(&self, what: &str) -> Result<()> {
        let latency = self.faults().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut f = self.faults();
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Err(injected(what));
        }
        Ok(())
    }

    /// The flips due for one GET of `key`, using one of their remaining GETs.
    fn take_flips(&self, key: &str) -> Vec<u64> {
        let mut f = self.faults();
        let Some(flip) = f.flips.get_mut(key) else {
            return Vec::new();
        };
        let at = flip.at.clone();
        match &mut flip.remaining {
            None => {}
            Some(0) => return Vec::new(),
            Some(n) => *n -= 1,
        }
        at
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.enter("put").await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        let mut f = self.faults();
        if f.fail_puts_after_applying > 0 {
            f.fail_puts_after_applying -= 1;
            return Err(injected("put applied, reported failed"));
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.enter("put multipart").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.gets.fetch_add(1, Relaxed);
        self.enter("get").await?;
        let result = self.inner.get_opts(location, options).await?;
        let flips = self.take_flips(location.as_ref());
        if flips.is_empty() {
            return Ok(result);
        }
        let range = result.range.clone();
        let (meta, attributes, extensions) = (
            result.meta.clone(),
            result.attributes.clone(),
            result.extensions.clone(),
        );
        let mut bytes = BytesMut::from(&result.bytes().await?[..]);
        for at in flips {
            if range.contains(&at) {
                bytes[(at - range.start) as usize] ^= 0xff;
            }
        }
        let body: Bytes = bytes.freeze();
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(body) }).boxed(),
            ),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let got = self
                .get_opts(
                    location,
                    GetOptions {
                        range: Some(r.clone().into()),
                        ..GetOptions::default()
                    },
                )
                .await?;
            out.push(got.bytes().await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if self.faults().fail_next > 0 {
            self.faults().fail_next -= 1;
            return futures::stream::once(async { Err(injected("delete")) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if self.faults().fail_next > 0 {
            self.faults().fail_next -= 1;
            return futures::stream::once(async { Err(injected("list")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.enter("list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.enter("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn store() -> Arc<FaultyStore> {
        Arc::new(FaultyStore::new(Arc::new(InMemory::new())))
    }

    #[tokio::test]
    async fn flips_bytes_in_gets_until_repaired() {
        let s = store();
        let p = Path::from("o");
        s.put(&p, PutPayload::from_static(b"abcdef")).await.unwrap();
        s.corrupt_byte("o", 2, None);
        let whole = s.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(&whole[..], &[b'a', b'b', b'c' ^ 0xff, b'd', b'e', b'f']);
        // A range not covering the byte is untouched; one covering it is corrupt.
        assert_eq!(&s.get_range(&p, 3..6).await.unwrap()[..], b"def");
        assert_eq!(s.get_range(&p, 1..3).await.unwrap()[1], b'c' ^ 0xff);
        s.repair("o");
        assert_eq!(&s.get_range(&p, 0..6).await.unwrap()[..], b"abcdef");
        // Only the next GET.
        s.corrupt_byte("o", 0, Some(1));
        assert_ne!(&s.get_range(&p, 0..6).await.unwrap()[..], b"abcdef");
        assert_eq!(&s.get_range(&p, 0..6).await.unwrap()[..], b"abcdef");
        assert_eq!(s.gets(), 6);
    }

    #[tokio::test]
    async fn fails_the_next_calls_and_reports_applied_puts_as_failed() {
        let s = store();
        let p = Path::from("o");
        s.fail_next(2);
        assert!(s.put(&p, PutPayload::from_static(b"x")).await.is_err());
        assert!(s.get(&p).await.is_err());
        assert!(
            matches!(s.get(&p).await, Err(object_store::Error::NotFound { .. })),
            "the failed PUT never reached the store"
        );
        s.fail_puts_after_applying(1);
        assert!(s.put(&p, PutPayload::from_static(b"y")).await.is_err());
        let landed = s.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(&landed[..], b"y", "reported failed, but applied");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_runs_on_the_tokio_clock() {
        let s = store();
        s.set_latency(Duration::from_secs(5));
        let t = tokio::time::Instant::now();
        s.put(&Path::from("o"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }
}
