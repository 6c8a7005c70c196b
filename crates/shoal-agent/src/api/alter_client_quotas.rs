//! AlterClientQuotas: set and remove quota keys of user and client-id entities.
//!
//! Each entry is checked and applied on its own, as Kafka does, and gets its own error:
//! an invalid entity, an unknown key (only `producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage` and `controller_mutation_rate`), a key named twice, a value
//! that is negative, not finite, or (for the byte rates) not a whole number, all give
//! INVALID_REQUEST with a message and change nothing for that entry. `validate_only`
//! checks without storing. A stored change is in this agent's table at once and in
//! every other agent's within about a second (they reload every second).

use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::ResponseError;
use shoal_meta::QuotaEntity;

use super::sb;
use crate::errors::meta_code;
use crate::quotas::{entity_of, KEYS};
use crate::Shared;

/// The entry's entity and changes, or why it is refused.
#[allow(clippy::type_complexity)]
fn check(entry: &AlterEntry) -> Result<(QuotaEntity, Vec<(String, Option<f64>)>), String> {
    let entity = entity_of(entry.entity.iter().map(|e| {
        (
            e.entity_type.as_str(),
            e.entity_name.as_ref().map(|n| n.as_str()),
        )
    }))?;
    let mut changes: Vec<(String, Option<f64>)> = Vec::new();
    for op in &entry.ops {
        let key = op.key.as_str();
        let Some((_, whole)) = KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown quota key '{key}' (known: {})",
                known.join(", ")
            ));
        };
        if changes.iter().any(|(k, _)| k == key) {
            return Err(format!("quota key '{key}' appears twice"));
        }
        if op.remove {
            changes.push((key.to_string(), None));
            continue;
        }
        let v = op.value;
        if !v.is_finite() || v < 0.0 {
            return Err(format!(
                "quota {key} must be a non-negative number, got {v}"
            ));
        }
        if *whole && (v.fract() != 0.0 || v > i64::MAX as f64) {
            return Err(format!(
                "quota {key} must be a whole number of bytes per second, got {v}"
            ));
        }
        changes.push((key.to_string(), Some(v)));
    }
    Ok((entity, changes))
}

pub async fn handle(
    shared: &Arc<Shared>,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut entries = Vec::with_capacity(req.entries.len());
    let mut changed = false;
    for entry in &req.entries {
        let (code, message) = match check(entry) {
            Err(why) => (ResponseError::InvalidRequest.code(), Some(why)),
            Ok(_) if req.validate_only => (0, None),
            Ok((entity, changes)) => {
                match shared.meta.alter_client_quota(&entity, &changes).await {
                    Ok(()) => {
                        changed = true;
                        (0, None)
                    }
                    Err(e) => (meta_code(&e), Some(e.to_string())),
                }
            }
        };
        let entity = entry
            .entity
            .iter()
            .map(|e| {
                EntityData::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect();
        entries.push(
            EntryData::default()
                .with_error_code(code)
                .with_error_message(message.map(sb))
                .with_entity(entity),
        );
    }
    if changed {
        if let Err(e) = crate::reload_quotas(shared).await {
            tracing::warn!(error = %e, "could not reload client quotas after a change; the next reload will");
        }
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, OpData};

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> AlterEntry {
        AlterEntry::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        EntityData::default()
                            .with_entity_type(sb(*t))
                            .with_entity_name(n.map(sb))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v, remove)| {
                        OpData::default()
                            .with_key(sb(*k))
                            .with_value(*v)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    #[test]
    fn entries_are_checked_as_kafka_checks_them() {
        let (entity, changes) = check(&entry(
            &[("user", Some("ANONYMOUS")), ("client-id", None)],
            &[
                ("producer_byte_rate", 1024.0, false),
                ("request_percentage", 0.0, true),
            ],
        ))
        .unwrap();
        assert_eq!(entity.encode(), "u=ANONYMOUS/c*");
        assert_eq!(
            changes,
            vec![
                ("producer_byte_rate".to_string(), Some(1024.0)),
                ("request_percentage".to_string(), None)
            ]
        );
        assert!(check(&entry(
            &[("client-id", Some("a"))],
            &[("request_percentage", 12.5, false)]
        ))
        .is_ok());
        let refused = |e: AlterEntry| check(&e).unwrap_err();
        let c = [("client-id", Some("a"))];
        assert!(refused(entry(&c, &[("producer_bytes_rate", 1.0, false)]))
            .contains("unknown quota key"));
        assert!(refused(entry(&c, &[("producer_byte_rate", -1.0, false)])).contains("non-negative"));
        assert!(
            refused(entry(&c, &[("consumer_byte_rate", f64::NAN, false)])).contains("non-negative")
        );
        assert!(refused(entry(&c, &[("consumer_byte_rate", 1.5, false)])).contains("whole"));
        assert!(refused(entry(
            &c,
            &[
                ("consumer_byte_rate", 1.0, false),
                ("consumer_byte_rate", 0.0, true)
            ]
        ))
        .contains("twice"));
        assert!(refused(entry(&[], &[])).contains("empty"));
        assert!(refused(entry(&[("user", None), ("user", Some("x"))], &[])).contains("twice"));
        assert!(refused(entry(&[("ip", Some("1.2.3.4"))], &[])).contains("not supported"));
        assert!(refused(entry(&[("group", Some("g"))], &[])).contains("unknown"));
    }
}
