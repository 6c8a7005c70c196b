//! Builders for the requests callers compose: reads with options, transactions of
//! compares and operations, watches. They only assemble [`proto`](crate::proto)
//! messages; nothing here talks to the network.

use crate::proto::{
    self, compare::TargetUnion, request_op::Request, response_op::Response, CompareResult,
    CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
pub use crate::proto::{SortOrder, SortTarget};

/// The end of a range: one key, `[key, end)`, or every key with the key as prefix.
#[derive(Debug, Clone, Default)]
enum End {
    #[default]
    Key,
    Range(Vec<u8>),
    Prefix,
}

impl End {
    fn resolve(&self, key: &[u8]) -> Vec<u8> {
        match self {
            End::Key => Vec::new(),
            End::Range(end) => end.clone(),
            End::Prefix => prefix_end(key),
        }
    }
}

/// The first key after every key that starts with `prefix` (`\0` for the empty prefix:
/// etcd reads that as "to the end").
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Options of a read (etcd's Range).
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    end: End,
    limit: i64,
    revision: i64,
    sort: Option<(SortTarget, SortOrder)>,
}

impl GetOptions {
    pub fn new() -> GetOptions {
        GetOptions::default()
    }
    /// Reads `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> GetOptions {
        self.end = End::Range(end.into());
        self
    }
    /// Reads every key starting with the key.
    pub fn with_prefix(mut self) -> GetOptions {
        self.end = End::Prefix;
        self
    }
    /// At most `limit` keys (0: no limit).
    pub fn with_limit(mut self, limit: i64) -> GetOptions {
        self.limit = limit;
        self
    }
    /// As of this revision (0: the latest).
    pub fn with_revision(mut self, revision: i64) -> GetOptions {
        self.revision = revision;
        self
    }
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> GetOptions {
        self.sort = Some((target, order));
        self
    }

    pub(crate) fn request(&self, key: Vec<u8>) -> RangeRequest {
        let (target, order) = self.sort.unwrap_or((SortTarget::Key, SortOrder::None));
        RangeRequest {
            range_end: self.end.resolve(&key),
            key,
            limit: self.limit,
            revision: self.revision,
            sort_order: order as i32,
            sort_target: target as i32,
            ..Default::default()
        }
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    lease: i64,
}

impl PutOptions {
    pub fn new() -> PutOptions {
        PutOptions::default()
    }
    /// The key is deleted when this lease expires or is revoked.
    pub fn with_lease(mut self, lease: i64) -> PutOptions {
        self.lease = lease;
        self
    }
    pub(crate) fn lease(&self) -> i64 {
        self.lease
    }
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    end: End,
}

impl DeleteOptions {
    pub fn new() -> DeleteOptions {
        DeleteOptions::default()
    }
    /// Deletes `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> DeleteOptions {
        self.end = End::Range(end.into());
        self
    }
    /// Deletes every key starting with the key.
    pub fn with_prefix(mut self) -> DeleteOptions {
        self.end = End::Prefix;
        self
    }

    pub(crate) fn request(&self, key: Vec<u8>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            range_end: self.end.resolve(&key),
            key,
            prev_kv: false,
        }
    }
}

/// Options of a watch.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    end: End,
    start_revision: i64,
}

impl WatchOptions {
    pub fn new() -> WatchOptions {
        WatchOptions::default()
    }
    /// Watches every key starting with the key.
    pub fn with_prefix(mut self) -> WatchOptions {
        self.end = End::Prefix;
        self
    }
    /// Reports changes from this revision on (0: from now).
    pub fn with_start_revision(mut self, revision: i64) -> WatchOptions {
        self.start_revision = revision;
        self
    }

    pub(crate) fn request(&self, key: Vec<u8>) -> proto::WatchCreateRequest {
        proto::WatchCreateRequest {
            range_end: self.end.resolve(&key),
            key,
            start_revision: self.start_revision,
            ..Default::default()
        }
    }
}

/// How a compare relates the key's current value to the given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

impl From<CompareOp> for CompareResult {
    fn from(op: CompareOp) -> CompareResult {
        match op {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        }
    }
}

/// One condition of a transaction.
#[derive(Debug, Clone)]
pub struct Compare(proto::Compare);

impl Compare {
    fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget, v: TargetUnion) -> Self {
        Compare(proto::Compare {
            result: CompareResult::from(op) as i32,
            target: target as i32,
            key: key.into(),
            target_union: Some(v),
        })
    }
    /// The key's version (writes since creation; 0 when absent).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Compare {
        Compare::new(
            key,
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }
    /// The revision of the key's last write.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key,
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }
    /// The key's value.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Compare {
        Compare::new(
            key,
            op,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }
    /// The revision that created the key (0 when absent): a put after a delete creates
    /// it anew, with a new create revision, so this names one life of the key.
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key,
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }
    /// The lease the key is attached to (0: none).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Compare {
        Compare::new(key, op, CompareTarget::Lease, TargetUnion::Lease(lease))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub struct TxnOp(RequestOp);

impl TxnOp {
    pub fn get(key: impl Into<Vec<u8>>, options: Option<GetOptions>) -> TxnOp {
        let req = options.unwrap_or_default().request(key.into());
        TxnOp(RequestOp {
            request: Some(Request::RequestRange(req)),
        })
    }
    pub fn put(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: Option<PutOptions>,
    ) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: value.into(),
                lease: options.map_or(0, |o| o.lease),
                prev_kv: false,
            })),
        })
    }
    pub fn delete(key: impl Into<Vec<u8>>, options: Option<DeleteOptions>) -> TxnOp {
        let req = options.unwrap_or_default().request(key.into());
        TxnOp(RequestOp {
            request: Some(Request::RequestDeleteRange(req)),
        })
    }
    /// A nested transaction (etcd 3.3+), run as one operation of the outer one.
    pub fn txn(txn: Txn) -> TxnOp {
        TxnOp(RequestOp {
            request: Some(Request::RequestTxn(txn.0)),
        })
    }
}

/// A transaction: if every compare holds, the `and_then` operations run, else the
/// `or_else` ones; atomically either way.
#[derive(Debug, Clone, Default)]
pub struct Txn(pub(crate) TxnRequest);

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.0.compare.extend(compares.into_iter().map(|c| c.0));
        self
    }
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.0.success.extend(ops.into_iter().map(|o| o.0));
        self
    }
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.0.failure.extend(ops.into_iter().map(|o| o.0));
        self
    }
}

/// The result of one operation of a transaction, in the order they were given.
#[derive(Debug, Clone)]
pub enum TxnOpResponse {
    Get(proto::RangeResponse),
    Put(proto::PutResponse),
    Delete(proto::DeleteRangeResponse),
    Txn(proto::TxnResponse),
}

impl proto::TxnResponse {
    /// The operations' results, in order (an empty slot etcd never sends is skipped).
    pub fn op_responses(&self) -> Vec<TxnOpResponse> {
        self.responses
            .iter()
            .filter_map(|r| {
                Some(match r.response.clone()? {
                    Response::ResponseRange(g) => TxnOpResponse::Get(g),
                    Response::ResponsePut(p) => TxnOpResponse::Put(p),
                    Response::ResponseDeleteRange(d) => TxnOpResponse::Delete(d),
                    Response::ResponseTxn(t) => TxnOpResponse::Txn(t),
                })
            })
            .collect()
    }

    /// The store's revision after the transaction.
    pub fn revision(&self) -> i64 {
        self.header.as_ref().map_or(0, |h| h.revision)
    }
}

impl proto::RangeResponse {
    /// The store's revision the read saw.
    pub fn revision(&self) -> i64 {
        self.header.as_ref().map_or(0, |h| h.revision)
    }
}

impl proto::KeyValue {
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    pub fn value(&self) -> &[u8] {
        &self.value
    }
    pub fn mod_revision(&self) -> i64 {
        self.mod_revision
    }
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }
    pub fn version(&self) -> i64 {
        self.version
    }
    pub fn lease(&self) -> i64 {
        self.lease
    }
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }
}

impl proto::Event {
    pub fn event_type(&self) -> proto::EventType {
        proto::EventType::try_from(self.r#type).unwrap_or(proto::EventType::Put)
    }
    pub fn kv(&self) -> Option<&proto::KeyValue> {
        self.kv.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ranges() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
        let r = GetOptions::new().with_prefix().request(b"ab".to_vec());
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"ab"[..], &b"ac"[..])
        );
        let r = GetOptions::new().request(b"k".to_vec());
        assert!(r.range_end.is_empty(), "one key");
        let TxnOp(op) = TxnOp::delete("p/", Some(DeleteOptions::new().with_prefix()));
        let Some(Request::RequestDeleteRange(d)) = op.request else {
            panic!("a delete")
        };
        assert_eq!(d.range_end, b"p0");
    }

    #[test]
    fn transactions_keep_their_parts_in_order() {
        let t = Txn::new()
            .when([Compare::version("a", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("a", "1", None), TxnOp::get("b", None)])
            .or_else([TxnOp::get("a", None)]);
        assert_eq!(t.0.compare.len(), 1);
        assert_eq!(t.0.success.len(), 2);
        assert!(matches!(
            t.0.success[1].request,
            Some(Request::RequestRange(_))
        ));
        assert_eq!(t.0.failure.len(), 1);
    }
}
