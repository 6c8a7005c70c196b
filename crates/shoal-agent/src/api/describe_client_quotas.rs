//! DescribeClientQuotas: the quotas whose entities match a filter, as Kafka matches.
//!
//! Each filter component names an entity type (`user`, `client-id`, `ip`) and matches
//! an exact name, the default entity, or any entity of that type (named or default).
//! An entity matches when every component matches one of its parts; with `strict` it
//! must also have no other parts. No components (and not strict) matches everything.
//! Reads the metadata store, not the agent's copy, so a describe right after an alter
//! through any agent sees it.

use std::sync::Arc;

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{QuotaEntity, QuotaName};

use super::sb;
use crate::errors::meta_code;
use crate::quotas::{CLIENT_ID, IP, USER};
use crate::Shared;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// One checked filter component.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Exact(String),
    Default,
    Any,
}

fn error(code: ResponseError, message: String) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(sb(message)))
        .with_entries(None)
}

/// The filter as `(entity type, wanted)` pairs, or why it is invalid.
fn filter(req: &DescribeClientQuotasRequest) -> Result<Vec<(String, Want)>, String> {
    let mut out: Vec<(String, Want)> = Vec::new();
    for c in &req.components {
        let kind = c.entity_type.as_str();
        if ![USER, CLIENT_ID, IP].contains(&kind) {
            return Err(format!(
                "unknown client quota entity type '{kind}' in filter"
            ));
        }
        if out.iter().any(|(k, _)| k == kind) {
            return Err(format!("duplicate filter component entity type '{kind}'"));
        }
        let want = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Want::Exact(name.to_string()),
            (MATCH_EXACT, None) => {
                return Err(format!("exact match for '{kind}' without a name"));
            }
            (MATCH_DEFAULT, _) => Want::Default,
            (MATCH_ANY, _) => Want::Any,
            (other, _) => return Err(format!("unknown match type {other}")),
        };
        out.push((kind.to_string(), want));
    }
    let has = |k: &str| out.iter().any(|(kind, _)| kind == k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err("an ip filter component cannot be combined with user or client-id".into());
    }
    Ok(out)
}

fn matches(entity: &QuotaEntity, filter: &[(String, Want)], strict: bool) -> bool {
    let part = |kind: &str| match kind {
        USER => entity.user.as_ref(),
        CLIENT_ID => entity.client_id.as_ref(),
        _ => None, // no ip entities are stored
    };
    let each = filter.iter().all(|(kind, want)| match (part(kind), want) {
        (None, _) => false,
        (Some(_), Want::Any) => true,
        (Some(QuotaName::Default), Want::Default) => true,
        (Some(QuotaName::Named(n)), Want::Exact(w)) => n == w,
        _ => false,
    });
    let parts = entity.user.is_some() as usize + entity.client_id.is_some() as usize;
    each && (!strict || parts == filter.len())
}

pub async fn handle(
    shared: &Arc<Shared>,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let filter = match filter(&req) {
        Ok(f) => f,
        Err(why) => return error(ResponseError::InvalidRequest, why),
    };
    let quotas = match shared.meta.client_quotas().await {
        Ok(q) => q,
        Err(e) => {
            let code = ResponseError::try_from_code(meta_code(&e))
                .unwrap_or(ResponseError::UnknownServerError);
            return error(code, e.to_string());
        }
    };
    let entries = quotas
        .into_iter()
        .filter(|q| matches(&q.entity, &filter, req.strict))
        .map(|q| {
            let entity = crate::quotas::entity_parts(&q.entity)
                .into_iter()
                .map(|(kind, name)| {
                    EntityData::default()
                        .with_entity_type(sb(kind))
                        .with_entity_name(name.map(sb))
                })
                .collect();
            let values = q
                .values
                .into_iter()
                .map(|(k, v)| ValueData::default().with_key(sb(k)).with_value(v))
                .collect();
            EntryData::default().with_entity(entity).with_values(values)
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn component(kind: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(sb(kind))
            .with_match_type(match_type)
            .with_match(name.map(sb))
    }

    fn entity(user: Option<QuotaName>, client_id: Option<QuotaName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    #[test]
    fn filters_match_as_kafkas() {
        let named = |s: &str| Some(QuotaName::Named(s.into()));
        let both = entity(named("u"), named("c"));
        let client = entity(None, named("c"));
        let default_client = entity(None, Some(QuotaName::Default));
        let req =
            |cs: Vec<ComponentData>| DescribeClientQuotasRequest::default().with_components(cs);
        let exact_c = filter(&req(vec![component(CLIENT_ID, MATCH_EXACT, Some("c"))])).unwrap();
        assert!(matches(&client, &exact_c, true));
        assert!(
            matches(&both, &exact_c, false),
            "not strict: other parts allowed"
        );
        assert!(!matches(&both, &exact_c, true), "strict: no other parts");
        assert!(!matches(&default_client, &exact_c, false));
        let default_c = filter(&req(vec![component(CLIENT_ID, MATCH_DEFAULT, None)])).unwrap();
        assert!(matches(&default_client, &default_c, true));
        assert!(!matches(&client, &default_c, false));
        let any_c = filter(&req(vec![component(CLIENT_ID, MATCH_ANY, None)])).unwrap();
        assert!(matches(&client, &any_c, true) && matches(&default_client, &any_c, true));
        let any_user = filter(&req(vec![component(USER, MATCH_ANY, None)])).unwrap();
        assert!(!matches(&client, &any_user, false));
        assert!(
            matches(&both, &filter(&req(vec![])).unwrap(), false),
            "no filter: all"
        );
        assert!(!matches(&both, &filter(&req(vec![])).unwrap(), true));
        for bad in [
            vec![component("group", MATCH_ANY, None)],
            vec![
                component(USER, MATCH_ANY, None),
                component(USER, MATCH_DEFAULT, None),
            ],
            vec![component(USER, MATCH_EXACT, None)],
            vec![component(USER, 7, None)],
            vec![
                component(IP, MATCH_ANY, None),
                component(USER, MATCH_ANY, None),
            ],
        ] {
            assert!(filter(&req(bad.clone())).is_err(), "{bad:?}");
        }
    }
}
