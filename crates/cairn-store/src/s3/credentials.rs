//! Whether an S3 store has credentials to use, decided before any request.
//!
//! The S3 client looks for credentials in order: keys given outright, a
//! web identity token, a container's credentials endpoint, and last the
//! EC2 instance metadata service. Without any of the first three it would
//! ask the metadata service, retrying for about a minute on a machine that
//! has none, and then report a request error about an address the user
//! never gave. So when nothing is configured, cairn asks the metadata
//! service once, with a one-second limit, and says plainly that there are
//! no credentials if it does not answer. `AWS_EC2_METADATA_DISABLED=true`
//! skips that question (as it does for the AWS tools).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{ErrorKind, RemoteError, Result, StoreError};

/// Where the instance metadata service is, unless `AWS_METADATA_ENDPOINT`
/// says otherwise.
const METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// How long the metadata service gets to answer.
const METADATA_WAIT: Duration = Duration::from_secs(1);

/// Fails unless `aws` configures credentials, or says to sign nothing, or
/// an instance metadata service answers.
pub async fn check(url: &str, aws: &BTreeMap<String, String>) -> Result<()> {
    let get = |name: &str| {
        aws.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let yes = |name: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let configured = yes("AWS_SKIP_SIGNATURE")
        || get("AWS_ACCESS_KEY_ID").is_some()
        || get("AWS_SECRET_ACCESS_KEY").is_some()
        || (get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && get("AWS_ROLE_ARN").is_some())
        || get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || (get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            && get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").is_some());
    if configured {
        return Ok(());
    }
    let none = "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or \
                AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)";
    let refuse = |detail: String, source| {
        StoreError::from(RemoteError {
            kind: ErrorKind::Unauthorized,
            store: url.into(),
            action: "finding credentials".into(),
            detail,
            source,
        })
    };
    if yes("AWS_EC2_METADATA_DISABLED") {
        return Err(refuse(none.into(), None));
    }
    let endpoint = get("AWS_METADATA_ENDPOINT").unwrap_or(METADATA_ENDPOINT);
    match metadata_answers(endpoint).await {
        Ok(()) => Ok(()),
        Err(e) => Err(refuse(
            format!("{none}; no instance metadata service answered at {endpoint}"),
            Some(e.into()),
        )),
    }
}

/// Asks for an IMDSv2 session token; any HTTP answer means a metadata
/// service is there (whether it grants a role is the S3 client's to find).
async fn metadata_answers(endpoint: &str) -> reqwest::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(METADATA_WAIT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    client
        .put(format!(
            "{}/latest/api/token",
            endpoint.trim_end_matches('/')
        ))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .map(drop)
}
