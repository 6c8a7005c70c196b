//! DescribeUserScramCredentials: Shoal has no SASL/SCRAM yet, so no user has credentials.
//!
//! Answered (rather than left unadvertised) because `kafka-configs --describe
//! --entity-type users` asks for credentials beside the user's quotas and fails on an
//! unsupported API. As in Kafka, describing every user lists none, and naming a user
//! without credentials gives that user RESOURCE_NOT_FOUND, which kafka-configs treats as
//! "no credentials".

use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::sb;

pub fn handle(req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let results = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            DescribeUserScramCredentialsResult::default()
                .with_user(u.name)
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(sb(
                    "Attempt to describe a user credential that does not exist (Shoal has no SCRAM credentials yet)",
                )))
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;

    #[test]
    fn nobody_has_credentials() {
        let all = handle(DescribeUserScramCredentialsRequest::default().with_users(None));
        assert_eq!((all.error_code, all.results.len()), (0, 0));
        let named = handle(
            DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![UserName::default().with_name(sb("ANONYMOUS"))])),
        );
        assert_eq!(named.results.len(), 1);
        assert_eq!(named.results[0].user.as_str(), "ANONYMOUS");
        assert_eq!(
            named.results[0].error_code,
            ResponseError::ResourceNotFound.code()
        );
    }
}
