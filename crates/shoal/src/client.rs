//! The one small Kafka client of the `shoal` binary: a blocking connection to one agent
//! that sends typed requests from the `kafka-protocol` crate and reads their answers in
//! order. The admin commands ([`crate::admin`]) and `shoal demo`'s producer and consumer
//! ([`crate::demo`]) both use it. Every read and write has a timeout, so a silent server
//! fails a command instead of hanging it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// A blocking connection to one agent.
pub struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    pub fn open(bootstrap: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(bootstrap).with_context(|| {
            format!("connect to {bootstrap} (is Shoal running there? set --bootstrap)")
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("shoal-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("read the response size")?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 << 20).contains(&len) {
            bail!("implausible response size {len}");
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .context("read the response")?;
        let mut bytes = bytes::Bytes::from(buf);
        let h = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))?;
        if h.correlation_id != self.correlation {
            bail!(
                "response for request {} arrived for {}",
                h.correlation_id,
                self.correlation
            );
        }
        let resp = R::Response::decode(&mut bytes, version)?;
        Ok(resp)
    }
}
