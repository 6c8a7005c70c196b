//! Cluster discovery and topic setup, done once before any load is generated.
//!
//! [`Cluster::discover`] connects to the bootstrap address, negotiates API versions,
//! creates the topic (replication factor 1, `TOPIC_ALREADY_EXISTS` is fine) and waits until
//! Metadata names a live leader for every partition. The resulting [`Cluster`] is an
//! immutable map of partition → leader address that the produce and consume phases use to
//! open their own connections; it does not follow leader changes during the run (a
//! benchmark against a moving cluster measures the move, not the system).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{api_versions, describe_error, is_retriable, Connection, Versions};

const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const NOT_CONTROLLER: i16 = 41;

/// Where every partition of the benchmark topic lives.
pub struct Cluster {
    pub client_id: String,
    pub versions: Versions,
    /// Whether the versions came from the server's ApiVersions answer or are our guess.
    pub versions_negotiated: bool,
    /// The bootstrap server's ApiVersions answer, (api key, min, max); `None` when it
    /// could not be read. Later phases pick their own APIs' versions from it.
    pub advertised: Option<Vec<(i16, i16, i16)>>,
    /// The address the run started from, where cluster-wide questions are asked.
    pub bootstrap: String,
    pub topic: String,
    /// False when the topic existed before this run.
    pub topic_created: bool,
    /// Broker id → `host:port` as advertised in Metadata.
    pub brokers: BTreeMap<i32, String>,
    /// Leader broker id of each partition, indexed by partition number.
    pub leaders: Vec<i32>,
}

impl Cluster {
    pub async fn discover(
        bootstrap: &str,
        client_id: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Self> {
        let mut conn = Connection::connect(bootstrap, client_id).await?;
        let (versions, advertised) = match api_versions(&conn).await {
            Ok(advertised) => (Versions::negotiate(&advertised)?, Some(advertised)),
            Err(e) => {
                eprintln!(
                    "warning: ApiVersions to {bootstrap} failed ({e:#}); using fixed versions"
                );
                conn = Connection::connect(bootstrap, client_id).await?;
                (Versions::fallback(), None)
            }
        };
        let versions_negotiated = advertised.is_some();

        let metadata = fetch_metadata(&conn, versions.metadata, topic).await?;
        let existing = metadata
            .topics
            .iter()
            .find(|t| t.error_code != UNKNOWN_TOPIC_OR_PARTITION);
        let topic_created = existing.is_none();
        if topic_created {
            create_topic(&conn, versions.create_topics, &metadata, topic, partitions).await?;
        }

        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            let metadata = fetch_metadata(&conn, versions.metadata, topic).await?;
            match layout(&metadata, topic) {
                Ok((brokers, leaders)) => {
                    if !topic_created && leaders.len() as i32 != partitions {
                        eprintln!(
                            "note: topic {topic} already exists with {} partitions; using them",
                            leaders.len()
                        );
                    }
                    return Ok(Self {
                        client_id: client_id.to_string(),
                        versions,
                        versions_negotiated,
                        advertised,
                        bootstrap: bootstrap.to_string(),
                        topic: topic.to_string(),
                        topic_created,
                        brokers,
                        leaders,
                    });
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "topic {topic} not ready after {}s",
                        TOPIC_READY_TIMEOUT.as_secs()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    pub fn topic_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.topic.clone()))
    }

    pub fn broker_addr(&self, broker: i32) -> Result<&str> {
        self.brokers
            .get(&broker)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("broker {broker} is not in the Metadata answer"))
    }

    /// Opens a new connection of the caller's own to a broker.
    pub async fn connect(&self, broker: i32) -> Result<Connection> {
        Connection::connect(self.broker_addr(broker)?, &self.client_id).await
    }

    /// Groups partitions by their leader so each request goes to one broker.
    pub fn group_by_leader(&self, partitions: &[i32]) -> BTreeMap<i32, Vec<i32>> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            groups.entry(self.leaders[p as usize]).or_default().push(p);
        }
        groups
    }

    /// Offsets of every partition at `timestamp` (-1 = latest, -2 = earliest). Retriable
    /// errors are retried for a while: a new topic's leaders may lag its Metadata.
    pub async fn list_offsets(&self, timestamp: i64) -> Result<Vec<i64>> {
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            match self.try_list_offsets(timestamp).await {
                Ok(offsets) => return Ok(offsets),
                Err(RetryOr::Retry(e)) if Instant::now() > deadline => return Err(e),
                Err(RetryOr::Retry(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(RetryOr::Fail(e)) => return Err(e),
            }
        }
    }

    async fn try_list_offsets(&self, timestamp: i64) -> Result<Vec<i64>, RetryOr> {
        let all: Vec<i32> = (0..self.partitions()).collect();
        let mut offsets = vec![-1i64; all.len()];
        for (leader, partitions) in self.group_by_leader(&all) {
            let conn = self.connect(leader).await?;
            let mut topic = ListOffsetsTopic::default();
            topic.name = self.topic_name();
            topic.partitions = partitions
                .iter()
                .map(|&p| {
                    let mut part = ListOffsetsPartition::default();
                    part.partition_index = p;
                    part.timestamp = timestamp;
                    part
                })
                .collect();
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = vec![topic];
            let response = conn.call(&request, self.versions.list_offsets).await?;
            for t in &response.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        let e = anyhow!(
                            "ListOffsets for {}-{} at {} failed: {}",
                            self.topic,
                            p.partition_index,
                            conn.addr(),
                            describe_error(p.error_code, None)
                        );
                        return Err(if is_retriable(p.error_code) {
                            RetryOr::Retry(e)
                        } else {
                            RetryOr::Fail(e)
                        });
                    }
                    if let Some(slot) = offsets.get_mut(p.partition_index as usize) {
                        *slot = p.offset;
                    }
                }
            }
        }
        if let Some(p) = offsets.iter().position(|&o| o < 0) {
            return Err(RetryOr::Fail(anyhow!(
                "ListOffsets gave no offset for {}-{p}",
                self.topic
            )));
        }
        Ok(offsets)
    }
}

/// An error worth another attempt, or one that ends the run.
enum RetryOr {
    Retry(anyhow::Error),
    Fail(anyhow::Error),
}

impl From<anyhow::Error> for RetryOr {
    fn from(e: anyhow::Error) -> Self {
        RetryOr::Fail(e)
    }
}

async fn fetch_metadata(conn: &Connection, version: i16, topic: &str) -> Result<MetadataResponse> {
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![wanted]);
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    conn.call(&request, version)
        .await
        .with_context(|| format!("Metadata from {}", conn.addr()))
}

async fn create_topic(
    conn: &Connection,
    version: i16,
    metadata: &MetadataResponse,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    let mut creatable = CreatableTopic::default();
    creatable.name = TopicName(StrBytes::from_string(topic.to_string()));
    creatable.num_partitions = partitions;
    creatable.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![creatable];
    request.timeout_ms = 30_000;

    let mut response = conn.call(&request, version).await.context("CreateTopics")?;
    let not_controller = response
        .topics
        .iter()
        .any(|t| t.error_code == NOT_CONTROLLER);
    if not_controller {
        // Old ZooKeeper-mode brokers only create topics on the controller.
        let controller = metadata.controller_id.0;
        let addr = metadata
            .brokers
            .iter()
            .find(|b| b.node_id.0 == controller)
            .map(|b| format!("{}:{}", b.host, b.port))
            .ok_or_else(|| anyhow!("CreateTopics: NOT_CONTROLLER and no controller known"))?;
        let controller_conn = Connection::connect(&addr, "shoal-bench").await?;
        response = controller_conn
            .call(&request, version)
            .await
            .context("CreateTopics on the controller")?;
    }
    for t in &response.topics {
        match t.error_code {
            0 | TOPIC_ALREADY_EXISTS => {}
            code => bail!(
                "CreateTopics {topic} ({partitions} partitions, replication factor 1) failed: {}",
                describe_error(code, t.error_message.as_deref())
            ),
        }
    }
    Ok(())
}

type Layout = (BTreeMap<i32, String>, Vec<i32>);

/// Broker addresses and partition leaders, or why the topic is not ready yet.
fn layout(metadata: &MetadataResponse, topic: &str) -> Result<Layout> {
    let brokers: BTreeMap<i32, String> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let t = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| anyhow!("Metadata does not mention topic {topic}"))?;
    if t.error_code != 0 {
        bail!(
            "Metadata for {topic}: {}",
            describe_error(t.error_code, None)
        );
    }
    if t.partitions.is_empty() {
        bail!("Metadata for {topic} lists no partitions");
    }
    let mut leaders = vec![-1; t.partitions.len()];
    for p in &t.partitions {
        let slot = leaders
            .get_mut(p.partition_index as usize)
            .ok_or_else(|| anyhow!("Metadata names partition {} of {topic}", p.partition_index))?;
        if p.error_code != 0 {
            bail!(
                "Metadata for {topic}-{}: {}",
                p.partition_index,
                describe_error(p.error_code, None)
            );
        }
        if !brokers.contains_key(&p.leader_id.0) {
            bail!("{topic}-{} has no live leader yet", p.partition_index);
        }
        *slot = p.leader_id.0;
    }
    if let Some(p) = leaders.iter().position(|&l| l < 0) {
        bail!("Metadata for {topic} skips partition {p}");
    }
    Ok((brokers, leaders))
}
