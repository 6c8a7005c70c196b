//! An [`ObjectStore`] wrapper that gives every request an S3-like latency, for
//! benchmarks: a loopback MinIO or a local directory answers in well under a millisecond,
//! S3 Standard in tens of milliseconds with a long tail, and figures taken without that
//! flatter every latency that waits on the store (produce acknowledgements, catch-up
//! reads, hedged GETs).
//!
//! Each request waits a delay drawn from a log-normal distribution with the configured
//! median and a spread such that 1% of requests take more than ten times the median
//! (with a 20 ms median: p99 about 205 ms, p99.9 about 440 ms), capped at 100 times the
//! median. The draws come from a seeded generator, so two runs with the same seed see
//! the same sequence of delays (in the order requests arrive). The delay is paid before
//! the request reaches the wrapped store; request bodies and answers are passed through
//! untouched. In the spirit of object_store's `ThrottledStore`; our own code.
//!
//! Agents build it only when `--object-store-latency` is set; it is off by default and
//! meant for benchmarks, never for production.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The log-normal spread that puts p99 at ten times the median: ln(10) / z(0.99).
const SIGMA: f64 = std::f64::consts::LN_10 / 2.326_348;
/// No delay exceeds this many medians.
const CAP: f64 = 100.0;

/// The delays requests get: a seeded log-normal draw around `median`.
pub struct Latency {
    median: Duration,
    rng: Mutex<SplitMix64>,
}

impl Latency {
    pub fn new(median: Duration, seed: u64) -> Self {
        Latency {
            median,
            rng: Mutex::new(SplitMix64(seed)),
        }
    }

    /// The next request's delay.
    pub fn next(&self) -> Duration {
        let (u1, u2) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (rng.unit(), rng.unit())
        };
        // Box-Muller: a standard normal draw from two uniform ones in (0, 1].
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        self.median.mul_f64((SIGMA * z).exp().min(CAP))
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// The wrapper.
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    latency: Latency,
}

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, latency: Latency) -> Self {
        LatencyStore { inner, latency }
    }

    async fn wait(&self) {
        tokio::time::sleep(self.latency.next()).await;
    }
}

impl fmt::Debug for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({}, {:?})", self.inner, self.latency.median)
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({})", self.inner)
    }
}

/// `inner`, starting after `delay`.
fn delayed<T: Send + 'static>(
    delay: Duration,
    inner: BoxStream<'static, T>,
) -> BoxStream<'static, T> {
    futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        inner
    })
    .flatten()
    .boxed()
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.wait().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.wait().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.wait().await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.wait().await;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        delayed(self.latency.next(), self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        delayed(self.latency.next(), self.inner.list(prefix))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.wait().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.wait().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn quantile(sorted: &[Duration], q: f64) -> Duration {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
    }

    #[test]
    fn delays_have_the_median_and_tail_asked_for_and_repeat_with_the_seed() {
        let l = Latency::new(Duration::from_millis(20), 7);
        let mut d: Vec<Duration> = (0..100_000).map(|_| l.next()).collect();
        let again = Latency::new(Duration::from_millis(20), 7);
        assert!(d.iter().take(100).all(|x| *x == again.next()), "seeded");
        d.sort();
        let ms = |x: Duration| x.as_secs_f64() * 1000.0;
        assert!((18.0..22.0).contains(&ms(quantile(&d, 0.5))), "median");
        let over_200 = d.iter().filter(|x| ms(**x) > 200.0).count() as f64 / d.len() as f64;
        assert!((0.007..0.013).contains(&over_200), "{over_200} over 200 ms");
        assert!(ms(d[d.len() - 1]) <= 2_000.0, "capped");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_on_the_tokio_clock_and_pass_through() {
        let s = LatencyStore::new(
            Arc::new(InMemory::new()),
            Latency::new(Duration::from_millis(20), 1),
        );
        let p = Path::from("o");
        let t = tokio::time::Instant::now();
        s.put(&p, PutPayload::from_static(b"abc")).await.unwrap();
        assert_eq!(&s.get_range(&p, 1..3).await.unwrap()[..], b"bc");
        let listed: Vec<_> = s.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        assert!(t.elapsed() > Duration::ZERO, "three requests, each delayed");
    }
}
