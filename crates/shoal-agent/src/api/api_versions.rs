//! ApiVersions: what this agent implements, from [`super::SUPPORTED`], and the feature
//! levels it finalizes (v3+): `transaction.version` (`--transaction-version`; 2 is
//! transactions v2, KIP-890) and `group.version` 1 (the consumer group protocol,
//! KIP-848). Kafka 4.x's Java client and franz-go use transactions v2 only when the
//! finalized level is 2; below it, the versions only v2 clients may send (Produce v12,
//! EndTxn v5, TxnOffsetCommit v5) are not offered either.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::sb;
use crate::Shared;

/// The epoch of the finalized features. Every agent finalizes the same levels for the
/// same flags, so one constant epoch serves a cluster; clients only compare it.
const FEATURES_EPOCH: i64 = 1;

/// The highest version of `key` offered at transaction version `tv`.
fn max_version(key: ApiKey, max: i16, tv: i16) -> i16 {
    if tv >= 2 {
        return max;
    }
    let below_v2 = match key {
        ApiKey::Produce => 11,
        ApiKey::EndTxn | ApiKey::TxnOffsetCommit => 4,
        _ => return max,
    };
    max.min(below_v2)
}

fn keys(tv: i16) -> Vec<ApiVersion> {
    super::SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(max_version(*k, *max, tv))
        })
        .collect()
}

/// (name, highest level supported, level finalized).
fn features(tv: i16) -> [(&'static str, i16, i16); 2] {
    [("transaction.version", 2, tv), ("group.version", 1, 1)]
}

pub fn handle(shared: &Shared, _req: ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let tv = shared.config.transaction_version;
    let resp = ApiVersionsResponse::default().with_api_keys(keys(tv));
    if version < 3 {
        return resp;
    }
    let supported = features(tv)
        .iter()
        .map(|(name, max, _)| {
            SupportedFeatureKey::default()
                .with_name(sb(*name))
                .with_min_version(0)
                .with_max_version(*max)
        })
        .collect();
    let finalized = features(tv)
        .iter()
        .filter(|(_, _, level)| *level > 0)
        .map(|(name, _, level)| {
            FinalizedFeatureKey::default()
                .with_name(sb(*name))
                .with_min_version_level(*level)
                .with_max_version_level(*level)
        })
        .collect();
    resp.with_supported_features(supported)
        .with_finalized_features_epoch(FEATURES_EPOCH)
        .with_finalized_features(finalized)
}

/// The v0 answer to an ApiVersions request of a version Shoal does not know.
pub fn unsupported() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(keys(2)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_transactions_v2_the_v2_versions_are_not_offered() {
        let max = |tv, key: ApiKey| {
            keys(tv)
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| k.max_version)
                .unwrap()
        };
        assert_eq!(max(2, ApiKey::Produce), 12);
        assert_eq!(max(2, ApiKey::EndTxn), 5);
        assert_eq!(max(1, ApiKey::Produce), 11);
        assert_eq!(max(1, ApiKey::EndTxn), 4);
        assert_eq!(max(0, ApiKey::TxnOffsetCommit), 4);
        assert_eq!(max(0, ApiKey::Fetch), max(2, ApiKey::Fetch));
    }
}
