//! DescribeUserScramCredentials: which SCRAM mechanisms each user has credentials for,
//! and their iteration counts (never salts or keys).
//!
//! As in Kafka: no user list (or an empty one) describes every user with credentials;
//! a named user without any gets RESOURCE_NOT_FOUND (which `kafka-configs --describe
//! --entity-type users` reads as "no credentials"), and a user named twice gets one
//! DUPLICATE_RESOURCE result. A metadata-store failure fails the whole request.

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use shoal_meta::{MetaError, MetaStore, ScramCredential};

use super::sb;
use crate::errors::meta_code;

pub async fn handle(
    meta: &dyn MetaStore,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    match describe(meta, req).await {
        Ok(results) => DescribeUserScramCredentialsResponse::default().with_results(results),
        Err(e) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(meta_code(&e))
            .with_error_message(Some(sb(e.to_string()))),
    }
}

fn result(user: &str, creds: &[ScramCredential]) -> DescribeUserScramCredentialsResult {
    let infos = creds
        .iter()
        .map(|c| {
            CredentialInfo::default()
                .with_mechanism(c.mechanism.kafka_type())
                .with_iterations(c.iterations)
        })
        .collect();
    DescribeUserScramCredentialsResult::default()
        .with_user(sb(user))
        .with_credential_infos(infos)
}

fn failed(user: &str, error: ResponseError, message: &str) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(sb(user))
        .with_error_code(error.code())
        .with_error_message(Some(sb(message)))
}

async fn describe(
    meta: &dyn MetaStore,
    req: DescribeUserScramCredentialsRequest,
) -> Result<Vec<DescribeUserScramCredentialsResult>, MetaError> {
    let named: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    if named.is_empty() {
        let all = meta.scram_credentials(None).await?;
        // Ordered by user: each user's credentials are adjacent.
        return Ok(all
            .chunk_by(|a, b| a.user == b.user)
            .map(|creds| result(&creds[0].user, creds))
            .collect());
    }
    let mut out = Vec::new();
    for (i, user) in named.iter().enumerate() {
        if named[..i].contains(user) {
            continue;
        }
        if named[i + 1..].contains(user) {
            out.push(failed(
                user,
                ResponseError::DuplicateResource,
                "Cannot describe SCRAM credentials for the same user twice in a single request",
            ));
            continue;
        }
        let creds = meta.scram_credentials(Some(user)).await?;
        if creds.is_empty() {
            out.push(failed(
                user,
                ResponseError::ResourceNotFound,
                "Attempt to describe a user credential that does not exist",
            ));
        } else {
            out.push(result(user, &creds));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::credential;
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use shoal_meta::ScramMechanism;

    fn ask(users: Option<&[&str]>) -> DescribeUserScramCredentialsRequest {
        DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.iter()
                .map(|n| UserName::default().with_name(sb(*n)))
                .collect()
        }))
    }

    /// `(user, error code, [(mechanism, iterations)])`.
    type Described = (String, i16, Vec<(i8, i32)>);

    fn summary(r: &DescribeUserScramCredentialsResponse) -> Vec<Described> {
        r.results
            .iter()
            .map(|x| {
                let infos = x
                    .credential_infos
                    .iter()
                    .map(|c| (c.mechanism, c.iterations))
                    .collect();
                (x.user.to_string(), x.error_code, infos)
            })
            .collect()
    }

    #[tokio::test]
    async fn describes_stored_credentials() {
        let meta = shoal_meta::SqliteStore::in_memory().unwrap();
        let nobody = handle(&meta, ask(None)).await;
        assert_eq!((nobody.error_code, nobody.results.len()), (0, 0));
        meta.alter_scram_credentials(
            &[
                credential("bob", ScramMechanism::Sha512, "b", b"s", 4096),
                credential("alice", ScramMechanism::Sha512, "a", b"s", 8192),
                credential("alice", ScramMechanism::Sha256, "a", b"s", 4096),
            ],
            &[],
        )
        .await
        .unwrap();
        let want_alice = ("alice".to_string(), 0, vec![(1, 4096), (2, 8192)]);
        let want_bob = ("bob".to_string(), 0, vec![(2, 4096)]);
        for all in [ask(None), ask(Some(&[]))] {
            let r = handle(&meta, all).await;
            assert_eq!(summary(&r), [want_alice.clone(), want_bob.clone()]);
        }
        let r = handle(&meta, ask(Some(&["bob", "carol", "dup", "dup"]))).await;
        assert_eq!(
            summary(&r),
            [
                want_bob,
                (
                    "carol".into(),
                    ResponseError::ResourceNotFound.code(),
                    vec![]
                ),
                (
                    "dup".into(),
                    ResponseError::DuplicateResource.code(),
                    vec![]
                ),
            ]
        );
    }
}
