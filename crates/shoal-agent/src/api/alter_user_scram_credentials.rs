//! AlterUserScramCredentials (API 51): add, replace and delete users' SCRAM credentials.
//!
//! The client salts the password (`kafka-configs --alter --entity-type users
//! --entity-name alice --add-config 'SCRAM-SHA-256=[iterations=8192,password=...]'`
//! sends salt, salted password and iterations); the agent derives the stored and server
//! keys from the salted password and keeps only those, never the salted password.
//!
//! Checked per user, as Kafka does, with Kafka's errors and messages: an empty name or
//! an iteration count outside 4096..=16384 is UNACCEPTABLE_CREDENTIAL, an unknown
//! mechanism UNSUPPORTED_SASL_MECHANISM, the same user and mechanism twice in one
//! request DUPLICATE_RESOURCE, deleting a credential the user does not have
//! RESOURCE_NOT_FOUND. One failing change fails every change of that user; the changes
//! of all users that passed are stored in one atomic step. Each user gets one result.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;
use shoal_meta::{MetaStore, ScramCredential, ScramMechanism};

use super::sb;
use crate::errors::meta_code;
use crate::security::scram;

/// One user's changes as the request is walked, or the first reason they fail.
struct UserChanges {
    name: String,
    upserts: Vec<ScramCredential>,
    deletions: Vec<(String, ScramMechanism)>,
    touched: Vec<ScramMechanism>,
    error: Option<(ResponseError, String)>,
}

/// What one change asks, before it is checked.
enum Change<'a> {
    Delete,
    Upsert {
        iterations: i32,
        salt: &'a [u8],
        salted: &'a [u8],
    },
}

pub async fn handle(
    meta: &dyn MetaStore,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<UserChanges> = Vec::new();
    // Deletions first, then upsertions, as Kafka walks them.
    let changes = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism, Change::Delete))
        .chain(req.upsertions.iter().map(|u| {
            let change = Change::Upsert {
                iterations: u.iterations,
                salt: &u.salt,
                salted: &u.salted_password,
            };
            (u.name.as_str(), u.mechanism, change)
        }));
    for (name, mechanism, change) in changes {
        let i = match users.iter().position(|u| u.name == name) {
            Some(i) => i,
            None => {
                users.push(UserChanges {
                    name: name.to_string(),
                    upserts: Vec::new(),
                    deletions: Vec::new(),
                    touched: Vec::new(),
                    error: None,
                });
                users.len() - 1
            }
        };
        let user = &mut users[i];
        if user.error.is_some() {
            continue;
        }
        if let Err(e) = check(meta, user, mechanism, change).await {
            user.error = Some(e);
        }
    }
    let upserts: Vec<ScramCredential> = users
        .iter()
        .filter(|u| u.error.is_none())
        .flat_map(|u| u.upserts.iter().cloned())
        .collect();
    let deletions: Vec<(String, ScramMechanism)> = users
        .iter()
        .filter(|u| u.error.is_none())
        .flat_map(|u| u.deletions.iter().cloned())
        .collect();
    let stored = if upserts.is_empty() && deletions.is_empty() {
        Ok(())
    } else {
        meta.alter_scram_credentials(&upserts, &deletions).await
    };
    let results = users
        .into_iter()
        .map(|u| {
            let r = AlterUserScramCredentialsResult::default().with_user(sb(u.name));
            match (u.error, &stored) {
                (Some((code, message)), _) => r
                    .with_error_code(code.code())
                    .with_error_message(Some(sb(message))),
                (None, Err(e)) => r
                    .with_error_code(meta_code(e))
                    .with_error_message(Some(sb(e.to_string()))),
                (None, Ok(())) => r,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Checks one change of `user` and adds it to the user's changes.
async fn check(
    meta: &dyn MetaStore,
    user: &mut UserChanges,
    mechanism: i8,
    change: Change<'_>,
) -> Result<(), (ResponseError, String)> {
    let err = |code, message: &str| Err((code, message.to_string()));
    if user.name.is_empty() {
        return err(
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        );
    }
    let Some(m) = ScramMechanism::from_kafka_type(mechanism) else {
        return err(
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        );
    };
    if user.touched.contains(&m) {
        return err(
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request",
        );
    }
    user.touched.push(m);
    match change {
        Change::Delete => {
            let existing = meta
                .scram_credentials(Some(&user.name))
                .await
                .map_err(|e| (meta_error(&e), e.to_string()))?;
            if !existing.iter().any(|c| c.mechanism == m) {
                return err(
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                );
            }
            user.deletions.push((user.name.clone(), m));
        }
        Change::Upsert {
            iterations,
            salt,
            salted,
        } => {
            if let Some(why) = scram::check_iterations(iterations) {
                return err(ResponseError::UnacceptableCredential, why);
            }
            if salt.is_empty() || salted.is_empty() {
                return err(
                    ResponseError::UnacceptableCredential,
                    "Salt and salted password must not be empty",
                );
            }
            user.upserts.push(scram::credential_from_salted(
                &user.name, m, salt, salted, iterations,
            ));
        }
    }
    Ok(())
}

fn meta_error(e: &shoal_meta::MetaError) -> ResponseError {
    ResponseError::try_from_code(meta_code(e)).unwrap_or(ResponseError::UnknownServerError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use shoal_meta::SqliteStore;

    fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(sb(name))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from_static(b"salted"))
    }

    fn delete(name: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion::default()
            .with_name(sb(name))
            .with_mechanism(mechanism)
    }

    async fn alter(
        meta: &SqliteStore,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> Vec<(String, i16)> {
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(deletions)
            .with_upsertions(upsertions);
        handle(meta, req)
            .await
            .results
            .into_iter()
            .map(|r| (r.user.to_string(), r.error_code))
            .collect()
    }

    async fn stored(meta: &SqliteStore) -> Vec<(String, ScramMechanism, i32)> {
        meta.scram_credentials(None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.user, c.mechanism, c.iterations))
            .collect()
    }

    #[tokio::test]
    async fn upserts_store_derived_keys() {
        let meta = SqliteStore::in_memory().unwrap();
        let r = alter(
            &meta,
            vec![],
            vec![upsert("alice", 1, 8192), upsert("alice", 2, 4096)],
        )
        .await;
        assert_eq!(r, [("alice".to_string(), 0)]);
        let creds = meta.scram_credentials(Some("alice")).await.unwrap();
        assert_eq!(
            creds[0],
            scram::credential_from_salted(
                "alice",
                ScramMechanism::Sha256,
                b"salt",
                b"salted",
                8192
            )
        );
        assert_eq!(creds[1].iterations, 4096);
        // Replace one, delete the other.
        let r = alter(
            &meta,
            vec![delete("alice", 2)],
            vec![upsert("alice", 1, 16384)],
        )
        .await;
        assert_eq!(r, [("alice".to_string(), 0)]);
        assert_eq!(
            stored(&meta).await,
            [("alice".into(), ScramMechanism::Sha256, 16384)]
        );
    }

    #[tokio::test]
    async fn errors_are_kafkas_and_fail_only_their_user() {
        let meta = SqliteStore::in_memory().unwrap();
        let r = alter(
            &meta,
            vec![delete("gone", 1), delete("", 1)],
            vec![
                upsert("few", 1, 4095),
                upsert("many", 2, 16385),
                upsert("mech", 3, 8192),
                upsert("twice", 1, 8192),
                upsert("twice", 1, 4096),
                // The deletion failed, so this user's upsertion is not stored either.
                upsert("gone", 2, 8192),
                upsert("ok", 2, 8192),
            ],
        )
        .await;
        use ResponseError::*;
        let want = [
            ("gone", ResourceNotFound),
            ("", UnacceptableCredential),
            ("few", UnacceptableCredential),
            ("many", UnacceptableCredential),
            ("mech", UnsupportedSaslMechanism),
            ("twice", DuplicateResource),
        ];
        let mut want: Vec<(String, i16)> = want
            .iter()
            .map(|(u, e)| (u.to_string(), e.code()))
            .collect();
        want.push(("ok".into(), 0));
        assert_eq!(r, want);
        assert_eq!(
            stored(&meta).await,
            [("ok".into(), ScramMechanism::Sha512, 8192)]
        );
        let empty_salt = upsert("ok", 1, 8192).with_salt(Bytes::new());
        assert_eq!(
            alter(&meta, vec![], vec![empty_salt]).await,
            [("ok".to_string(), UnacceptableCredential.code())]
        );
    }
}
