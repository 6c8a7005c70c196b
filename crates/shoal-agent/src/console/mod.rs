//! The web console: a few server-rendered pages (agents, topics, consumer groups) and
//! plots of this agent's throughput, served over HTTP on `--console-listen`.
//!
//! Lifecycle: [`Agent::start`](crate::Agent::start) binds the listener and spawns
//! [`serve`], which samples the agent's counters once a second into a ring buffer
//! ([`samples`]) and answers requests until the agent's shutdown token is cancelled.
//!
//! What it must not do: reach into the agent beyond [`source::Source`], the one narrow
//! interface it reads through, or change anything (every route is a GET). It has no
//! authentication, so it listens on loopback unless told otherwise. The front end is
//! `console.js` and `console.css`, compiled into the binary; nothing is loaded from
//! elsewhere at run time.
//!
//! Routes: `/` (throughput plots), `/agents`, `/topics`, `/groups` (HTML), and the same
//! data as JSON under `/api/throughput`, `/api/agents`, `/api/topics`, `/api/groups`.

mod pages;
pub mod samples;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use samples::{Rate, Samples};
pub use source::{AgentSource, Source};

/// Object-store request prices for the console's cost estimate (US dollars).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestPrices {
    /// Where the prices are from, e.g. "aws S3 Standard list prices".
    pub label: String,
    pub put_per_1000: f64,
    pub get_per_1000: f64,
}

/// Seconds in the month the estimate projects (30 days, as `shoal cost`).
const MONTH_S: f64 = 30.0 * 24.0 * 3600.0;
/// The estimate averages the request rates of this many last intervals.
const COST_WINDOW: usize = 60;
/// After shutdown is asked, open console connections get this long to finish.
const DRAIN: Duration = Duration::from_secs(2);

/// What every handler shares.
struct Console {
    source: Arc<dyn Source>,
    samples: Arc<Samples>,
    prices: Option<RequestPrices>,
}

/// The request-cost projection the overview shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cost {
    pub label: String,
    pub put_per_1000: f64,
    pub get_per_1000: f64,
    /// Average rates over the last `window_s` seconds.
    pub puts_s: f64,
    pub gets_s: f64,
    pub window_s: usize,
    pub dollars_month: f64,
}

/// `/api/throughput`: one rate per sampled interval, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub interval_ms: u64,
    pub samples: Vec<Rate>,
    pub cost: Option<Cost>,
}

/// A month of this agent's object-store requests at the recent average rate.
pub fn estimate(rates: &[Rate], prices: &RequestPrices) -> Cost {
    let recent = &rates[rates.len().saturating_sub(COST_WINDOW)..];
    let n = recent.len().max(1) as f64;
    let puts_s = recent.iter().map(|r| r.puts_s).sum::<f64>() / n;
    let gets_s = recent.iter().map(|r| r.gets_s).sum::<f64>() / n;
    let dollars_month =
        (puts_s * prices.put_per_1000 + gets_s * prices.get_per_1000) / 1000.0 * MONTH_S;
    Cost {
        label: prices.label.clone(),
        put_per_1000: prices.put_per_1000,
        get_per_1000: prices.get_per_1000,
        puts_s,
        gets_s,
        window_s: recent.len(),
        dollars_month,
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/agents", get(agents_page))
        .route("/topics", get(topics_page))
        .route("/groups", get(groups_page))
        .route("/api/throughput", get(throughput))
        .route("/api/agents", get(agents_json))
        .route("/api/topics", get(topics_json))
        .route("/api/groups", get(groups_json))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .with_state(console)
}

/// Samples `source` and serves the console on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    prices: Option<RequestPrices>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let samples = Arc::new(Samples::default());
    let sampler = tokio::spawn(samples::run(
        source.clone(),
        samples.clone(),
        shutdown.clone(),
    ));
    let app = router(Arc::new(Console {
        source,
        samples,
        prices,
    }));
    let stop = shutdown.clone();
    let server = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    };
    // A browser may hold a connection open; do not let it hold up the agent's exit.
    let result = tokio::select! {
        r = server => r.map_err(anyhow::Error::from),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => Ok(()),
    };
    sampler.abort();
    result
}

fn throughput_of(c: &Console) -> Throughput {
    let samples = c.samples.rates();
    Throughput {
        interval_ms: samples::EVERY.as_millis() as u64,
        cost: c.prices.as_ref().map(|p| estimate(&samples, p)),
        samples,
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("could not read {what} from the metadata store: {e}\n"),
    )
        .into_response()
}

async fn throughput(State(c): State<Arc<Console>>) -> Json<Throughput> {
    Json(throughput_of(&c))
}

async fn agents_json(State(c): State<Arc<Console>>) -> Response {
    Json(c.source.agents()).into_response()
}

async fn topics_json(State(c): State<Arc<Console>>) -> Response {
    match c.source.topics().await {
        Ok(t) => Json(t).into_response(),
        Err(e) => failed("topics", e),
    }
}

async fn groups_json(State(c): State<Arc<Console>>) -> Response {
    match c.source.groups().await {
        Ok(g) => Json(g).into_response(),
        Err(e) => failed("groups", e),
    }
}

async fn overview(State(c): State<Arc<Console>>) -> Html<String> {
    Html(pages::overview(&c.source.cluster_id(), c.prices.as_ref()))
}

async fn agents_page(State(c): State<Arc<Console>>) -> Html<String> {
    Html(pages::agents(&c.source.cluster_id(), &c.source.agents()))
}

async fn topics_page(State(c): State<Arc<Console>>) -> Response {
    match c.source.topics().await {
        Ok(t) => Html(pages::topics(&c.source.cluster_id(), &t)).into_response(),
        Err(e) => failed("topics", e),
    }
}

async fn groups_page(State(c): State<Arc<Console>>) -> Response {
    match c.source.groups().await {
        Ok(g) => Html(pages::groups(&c.source.cluster_id(), &g)).into_response(),
        Err(e) => failed("groups", e),
    }
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(puts_s: f64, gets_s: f64) -> Rate {
        Rate {
            t_ms: 0,
            produce_bytes_s: 0.0,
            fetch_bytes_s: 0.0,
            puts_s,
            gets_s,
        }
    }

    #[test]
    fn the_estimate_is_a_month_of_the_recent_request_rate() {
        let prices = RequestPrices {
            label: "test".into(),
            put_per_1000: 0.005,
            get_per_1000: 0.0004,
        };
        // An old burst beyond the window does not count.
        let mut rates = vec![rate(1000.0, 1000.0); 5];
        rates.extend(vec![rate(4.0, 10.0); COST_WINDOW]);
        let c = estimate(&rates, &prices);
        assert_eq!(c.window_s, COST_WINDOW);
        assert_eq!(c.puts_s, 4.0);
        // 4 PUT/s × 2,592,000 s × $0.005/1000 = $51.84; 10 GET/s → $10.368.
        assert!(
            (c.dollars_month - 62.208).abs() < 1e-6,
            "{}",
            c.dollars_month
        );
        assert_eq!(estimate(&[], &prices).dollars_month, 0.0);
    }
}
