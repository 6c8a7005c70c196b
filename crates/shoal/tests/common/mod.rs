//! Test kit shared by the integration tests: start the real `shoal` binary, talk to it.
//!
//! [`Agent`] runs `shoal playground` on an ephemeral loopback port in a temporary (or
//! given) data directory, learns the port from the banner on stderr, keeps draining
//! stderr into a log (printed when a test fails), and kills the process when dropped.
//!
//! [`Client`] is a deliberately small blocking Kafka client over `std::net::TcpStream`,
//! built on the `kafka-protocol` message types. Every socket operation has a timeout, so
//! a misbehaving server fails a test instead of hanging it. It speaks exactly what the
//! tests need: typed requests with the right header versions, raw frames for bad-input
//! tests, and a few conveniences (create a topic, produce, fetch everything, list offsets).
//!
//! Each test binary uses a different subset of this module, hence the `dead_code` allow.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, FetchRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// How long the agent may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped agent may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Socket read/write timeout. Long enough for a long-poll fetch of a few seconds.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Versions the helpers use: the newest Shoal supports that still name topics by name.
pub const API_VERSIONS_V: i16 = 3;
pub const METADATA_V: i16 = 12;
pub const CREATE_TOPICS_V: i16 = 7;
pub const PRODUCE_V: i16 = 9;
pub const FETCH_V: i16 = 12;
pub const LIST_OFFSETS_V: i16 = 7;

/// A running `shoal playground`. Killed (SIGKILL) when dropped.
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    /// Keeps a temporary data directory alive as long as the agent, when we made one.
    _tmp: Option<tempfile::TempDir>,
}

impl Agent {
    /// Starts an agent in a fresh temporary data directory.
    pub fn start(extra_args: &[&str]) -> Agent {
        let tmp = tempfile::tempdir().expect("create a temporary data directory");
        let mut agent = Agent::start_in(tmp.path(), extra_args);
        agent._tmp = Some(tmp);
        agent
    }

    /// Starts an agent on `data_dir` (which outlives it; used for restarts).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Agent {
        Agent::start_with_env(data_dir, extra_args, &[])
    }

    /// Like [`Agent::start_in`], with extra environment variables for the process.
    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.envs(env.iter().copied());
        cmd.arg("playground")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"]);
        if !extra_args.contains(&"--batch-timeout") {
            cmd.args(["--batch-timeout", "10ms"]);
        }
        let mut child = cmd
            .args(extra_args)
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the shoal binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = parse_banner(&line) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(e) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                // Give the drain thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                panic!(
                    "shoal did not print its listening line within {START_TIMEOUT:?} ({e}; exit status {status:?}).\nLog so far:\n{log}"
                );
            }
        };
        Agent {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
            _tmp: None,
        }
    }

    /// Everything the agent wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A memory figure of the agent's process from /proc/PID/status, in MiB:
    /// `"VmRSS"` (resident now) or `"VmHWM"` (the peak).
    /// Waits until the log (drained by another thread) shows `text`; panics after 15 s.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !self.log().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "the log never showed {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn memory_mib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kb / 1024
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    /// A new client connection to this agent.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends SIGTERM (through the `kill` command) and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(ok.success(), "kill -TERM {pid} failed: {ok}");
        self.wait_exit()
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("agent is running");
        child.kill().expect("send SIGKILL");
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit after a signal.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("agent is running");
            if let Some(status) = child.try_wait().expect("wait for shoal") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "shoal did not exit within {EXIT_TIMEOUT:?}.\nLog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- shoal log ({}) ----\n{}---- end of shoal log ----",
                self.addr,
                self.log()
            );
        }
    }
}

/// `Shoal is listening on 127.0.0.1:PORT (data in DIR).` → the address.
fn parse_banner(line: &str) -> Option<SocketAddr> {
    let rest = line.split("Shoal is listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// What happened to a connection we expected the server to close.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly close (read returned 0 bytes).
    Eof,
    /// Connection reset or broken pipe.
    Reset,
}

/// A byte stream a [`Client`] talks over: TCP, or TLS over TCP.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A minimal blocking Kafka client.
pub struct Client {
    /// Requests and answers go through `io`; `stream` is the TCP socket under it, for
    /// timeouts and shutdown.
    io: Box<dyn Io>,
    stream: TcpStream,
    next_correlation: i32,
    /// Requests sent and not yet answered: (api key, version, correlation id).
    pending: VecDeque<(ApiKey, i16, i32)>,
    /// The `client.id` in every request header (quotas are per client id).
    client_id: StrBytes,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            io: Box::new(stream.try_clone().expect("clone the socket")),
            stream,
            next_correlation: 1,
            pending: VecDeque::new(),
            client_id: StrBytes::from_static_str("shoal-tests"),
        }
    }

    /// A client over TLS (rustls), trusting the PEM CA certificates in `ca_pem`; the
    /// server's certificate must name 127.0.0.1.
    pub fn connect_tls(addr: SocketAddr, ca_pem: &[u8]) -> Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.expect("a PEM CA certificate")).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut c = Client::connect(addr);
        let tls = rustls::StreamOwned::new(conn, c.stream.try_clone().unwrap());
        c.io = Box::new(tls);
        c
    }

    /// A client whose requests carry `client_id` instead of `shoal-tests`.
    pub fn connect_as(addr: SocketAddr, client_id: &str) -> Client {
        let mut c = Client::connect(addr);
        c.client_id = StrBytes::from_string(client_id.to_string());
        c
    }

    /// Sends one request and returns its decoded response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.send_only(req, version);
        self.recv::<R>()
    }

    /// Sends a request without waiting for its answer (for pipelining); answers are
    /// read in order with [`Client::recv`].
    pub fn send_only<R: Request>(&mut self, req: &R, version: i16) {
        if let Err(e) = self.try_send_only(req, version) {
            panic!("write {:?} v{version}: {e}", ApiKey::try_from(R::KEY));
        }
    }

    /// [`Client::send_only`] that reports a failed write instead of panicking.
    pub fn try_send_only<R: Request>(&mut self, req: &R, version: i16) -> std::io::Result<()> {
        let key = ApiKey::try_from(R::KEY).expect("known API key");
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .expect("encode request header");
        req.encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
        self.write_frame(&body)?;
        self.pending.push_back((key, version, correlation_id));
        Ok(())
    }

    /// Reads the answer to the oldest request sent with [`Client::send_only`].
    pub fn recv<R: Request>(&mut self) -> R::Response {
        self.try_recv::<R>().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::recv`] that reports a failed read instead of panicking. A response
    /// that arrives but is wrong (correlation id, decoding) still panics.
    pub fn try_recv<R: Request>(&mut self) -> std::io::Result<R::Response> {
        let (key, version, correlation_id) =
            self.pending.pop_front().expect("a request is pending");
        assert_eq!(key as i16, R::KEY, "answers are read in request order");
        let mut frame = self.read_frame().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("read the {key:?} v{version} response: {e}"),
            )
        })?;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .unwrap_or_else(|e| panic!("decode the {key:?} v{version} response header: {e}"));
        assert_eq!(
            header.correlation_id, correlation_id,
            "{key:?} v{version} response carries the request's correlation id"
        );
        let response = R::Response::decode(&mut frame, version)
            .unwrap_or_else(|e| panic!("decode the {key:?} v{version} response: {e}"));
        assert_eq!(
            frame.remaining(),
            0,
            "{key:?} v{version} response has {} bytes after the body",
            frame.remaining()
        );
        Ok(response)
    }

    /// Writes a size-prefixed frame.
    pub fn write_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(body.len() + 4);
        out.put_i32(body.len() as i32);
        out.extend_from_slice(body);
        self.io.write_all(&out)
    }

    /// Writes bytes as they are (for malformed framing).
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes)
    }

    /// Closes our sending half.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Reads one size-prefixed frame.
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.io.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(0..=256 << 20).contains(&len) {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("response frame size {len}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.io.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Asserts the server closes this connection (without answering) within `within`.
    pub fn expect_closed(&mut self, within: Duration) -> Closed {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        let result = match self.io.read(&mut buf) {
            Ok(0) => Closed::Eof,
            Ok(n) => panic!(
                "expected the server to close the connection, got {n} bytes: {:?}",
                &buf[..n.min(64)]
            ),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                Closed::Reset
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server did not close the connection within {within:?}")
            }
            Err(e) => panic!("unexpected error waiting for the connection to close: {e}"),
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        result
    }

    // ---- conveniences ----

    pub fn api_versions(&mut self) -> ApiVersionsResponse {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shoal-tests"))
            .with_client_software_version(StrBytes::from_static_str("0.1"));
        self.send(&req, API_VERSIONS_V)
    }

    /// CreateTopics for one topic; returns the raw response.
    pub fn create_topic_raw(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> CreateTopicsResponse {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(10_000);
        self.send(&req, CREATE_TOPICS_V)
    }

    /// Creates a topic and asserts it worked.
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let resp = self.create_topic_raw(name, partitions, configs);
        assert_eq!(resp.topics.len(), 1);
        let t = &resp.topics[0];
        assert_eq!(
            t.error_code, 0,
            "create topic {name}: error {} ({:?})",
            t.error_code, t.error_message
        );
        assert_eq!(t.num_partitions, partitions);
    }

    /// Metadata for the named topics (all topics when `None`).
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> MetadataResponse {
        let req = MetadataRequest::default().with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        }));
        self.send(&req, METADATA_V)
    }

    /// Produces one encoded records blob (one or more batches) to one partition with
    /// acks=-1 and returns the partition's answer.
    pub fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> PartitionProduceResponse {
        let mut parts = self.produce_many(topic, vec![(partition, records)]);
        assert_eq!(parts.len(), 1);
        parts.remove(0)
    }

    /// Produces to several partitions of one topic in one request (acks=-1); answers
    /// come back in request order.
    pub fn produce_many(
        &mut self,
        topic: &str,
        data: Vec<(i32, Bytes)>,
    ) -> Vec<PartitionProduceResponse> {
        let req = produce_request(topic, data);
        let resp = self.send(&req, PRODUCE_V);
        assert_eq!(resp.responses.len(), 1, "one topic in the answer");
        let t = resp.responses.into_iter().next().unwrap();
        assert_eq!(t.name.0.as_str(), topic);
        t.partition_responses
    }

    /// Produces records (uncompressed, one batch) and returns (error code, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, records: &[Record]) -> (i16, i64) {
        let r = self.produce_batch(topic, partition, encode_batch(records, Compression::None));
        assert_eq!(r.index, partition);
        (r.error_code, r.base_offset)
    }

    /// One Fetch (by name, v12) of one partition.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> PartitionData {
        let req = fetch_request(topic, partition, offset, max_wait_ms, max_bytes);
        let resp = self.send(&req, FETCH_V);
        assert_eq!(resp.error_code, 0, "fetch top-level error");
        assert_eq!(resp.responses.len(), 1);
        let t = resp.responses.into_iter().next().unwrap();
        assert_eq!(t.topic.0.as_str(), topic);
        assert_eq!(t.partitions.len(), 1);
        let p = t.partitions.into_iter().next().unwrap();
        assert_eq!(p.partition_index, partition);
        p
    }

    /// Every record of a partition from `from` up to the high watermark at the time of
    /// the first fetch, in offset order.
    pub fn fetch_all(&mut self, topic: &str, partition: i32, from: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        let mut next = from;
        let mut end: Option<i64> = None;
        for _ in 0..10_000 {
            if end.is_some_and(|e| next >= e) {
                return out;
            }
            let p = self.fetch(topic, partition, next, 0, 1 << 20);
            assert_eq!(
                p.error_code, 0,
                "fetch {topic}/{partition} at {next}: error {}",
                p.error_code
            );
            let hw = *end.get_or_insert(p.high_watermark);
            if next >= hw {
                return out;
            }
            let records = decode_records(&p.records.unwrap_or_default());
            let before = next;
            let mut last = i64::MIN;
            for r in records {
                assert!(
                    r.offset > last,
                    "fetched records are in offset order ({} after {last})",
                    r.offset
                );
                last = r.offset;
                // A batch may start before the requested offset; skip what we have.
                if r.offset >= next && r.offset < hw {
                    next = r.offset + 1;
                    out.push(r);
                }
            }
            assert!(
                next > before,
                "fetch {topic}/{partition} at {before} below the high watermark {hw} returned no records"
            );
        }
        panic!("fetch_all {topic}/{partition} did not reach the high watermark");
    }

    /// ListOffsets for one partition: (error code, offset, timestamp).
    /// `timestamp` -1 is latest, -2 earliest, -3 max timestamp.
    pub fn list_offsets(&mut self, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let resp = self.send(&req, LIST_OFFSETS_V);
        assert_eq!(resp.topics.len(), 1);
        let t = &resp.topics[0];
        assert_eq!(t.partitions.len(), 1);
        let p = &t.partitions[0];
        assert_eq!(p.partition_index, partition);
        (p.error_code, p.offset, p.timestamp)
    }

    /// A topic's configs as DescribeConfigs (v4) reports them: (name, value).
    pub fn describe_topic_configs(&mut self, topic: &str) -> Vec<(String, Option<String>)> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2) // TOPIC
                .with_resource_name(sb(topic))
                .with_configuration_keys(None),
        ]);
        let resp = self.send(&req, 4);
        assert_eq!(resp.results.len(), 1);
        let r = &resp.results[0];
        assert_eq!(
            r.error_code, 0,
            "describe configs of {topic}: {:?}",
            r.error_message
        );
        r.configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_string(),
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                )
            })
            .collect()
    }

    /// One config value of a topic.
    pub fn topic_config(&mut self, topic: &str, name: &str) -> Option<String> {
        self.describe_topic_configs(topic)
            .into_iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v)
    }

    /// IncrementalAlterConfigs (v1) SET of one topic config; asserts it worked.
    pub fn set_topic_config(&mut self, topic: &str, name: &str, value: &str) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(sb(topic))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(sb(name))
                    .with_config_operation(0) // SET
                    .with_value(Some(sb(value)))]),
        ]);
        let resp = self.send(&req, 1);
        assert_eq!(resp.responses.len(), 1);
        let r = &resp.responses[0];
        assert_eq!(
            r.error_code, 0,
            "set {name}={value} on {topic}: {:?}",
            r.error_message
        );
    }

    /// CreatePartitions (v3) to `count` partitions; asserts it worked.
    pub fn create_partitions(&mut self, topic: &str, count: i32) {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None)])
            .with_timeout_ms(10_000);
        let resp = self.send(&req, 3);
        assert_eq!(resp.results.len(), 1);
        let r = &resp.results[0];
        assert_eq!(
            r.error_code, 0,
            "grow {topic} to {count} partitions: {:?}",
            r.error_message
        );
    }

    /// The partition count Metadata reports for a topic.
    pub fn partition_count(&mut self, topic: &str) -> usize {
        let md = self.metadata(Some(&[topic]));
        assert_eq!(md.topics.len(), 1);
        let t = &md.topics[0];
        assert_eq!(t.error_code, 0, "metadata of {topic}");
        t.partitions.len()
    }

    /// Asserts the agent serves this connection normally: ApiVersions, then produce one
    /// record to `topic`/0 (created if missing) and read it back.
    pub fn assert_healthy(&mut self, topic: &str) {
        let versions = self.api_versions();
        assert_eq!(versions.error_code, 0);
        assert!(!versions.api_keys.is_empty());
        let md = self.metadata(Some(&[topic]));
        if md.topics.first().is_none_or(|t| t.error_code != 0) {
            self.create_topic(topic, 1, &[]);
        }
        let value = format!("healthy-{}", now_ms());
        let (code, base) = self.produce(topic, 0, &[record(None, Some(value.as_bytes()))]);
        assert_eq!(code, 0, "produce on a healthy connection");
        let got = self.fetch_all(topic, 0, base);
        assert_eq!(got.len(), 1, "one record from offset {base}");
        assert_eq!(got[0].offset, base);
        assert_eq!(got[0].value.as_deref(), Some(value.as_bytes()));
    }
}

// ---- request and record builders ----

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A plain record (offset and sequence are set by [`encode_batch`]).
pub fn record(key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: IndexMap::new(),
    }
}

/// A record with headers.
pub fn record_with_headers(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Record {
    let mut r = record(key, value);
    for (k, v) in headers {
        r.headers.insert(sb(k), v.map(Bytes::copy_from_slice));
    }
    r
}

/// Records holding the given values and no keys.
pub fn values<S: AsRef<[u8]>>(vals: &[S]) -> Vec<Record> {
    vals.iter()
        .map(|v| record(None, Some(v.as_ref())))
        .collect()
}

/// Encodes records as one v2 batch (relative offsets 0.., no producer id).
pub fn encode_batch(records: &[Record], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r.offset = i as i64;
            // The encoder keeps records in one batch while offset - sequence is constant;
            // this also makes the batch's base sequence -1 (no idempotence).
            r.sequence = i as i32 - 1;
            r
        })
        .collect();
    encode_records(&records, compression)
}

/// Encodes records exactly as given (the encoder splits batches as it sees fit).
pub fn encode_records(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Decodes the complete batches in fetched bytes (a trailing partial batch, which Kafka
/// allows in a Fetch answer, is ignored).
pub fn decode_records(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= 12 {
        let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap());
        assert!(len > 0, "fetched batch with length {len}");
        let end = at + 12 + len as usize;
        if end > data.len() {
            break;
        }
        let mut batch = Bytes::copy_from_slice(&data[at..end]);
        let set = RecordBatchDecoder::decode(&mut batch)
            .unwrap_or_else(|e| panic!("decode a fetched batch at byte {at}: {e}"));
        out.extend(set.records);
        at = end;
    }
    out
}

pub fn produce_request(topic: &str, data: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(
                data.into_iter()
                    .map(|(p, records)| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(records))
                    })
                    .collect(),
            )])
}

pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])])
}

/// A request frame body: a v1 header (key, version, correlation id, client id) and
/// then `body` as given. For requests the typed encoder cannot express.
pub fn raw_request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(api_key);
    out.put_i16(version);
    out.put_i32(correlation_id);
    out.put_i16(-1); // null client id
    out.extend_from_slice(body);
    out
}

/// CRC-32C (Castagnoli), as Kafka record batches use; bitwise, fine for tests.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the CRC of a single v2 batch after a test edited it.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}
