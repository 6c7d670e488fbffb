//! AWS Secrets Manager, through the official SDK client (configured in
//! [`crate::aws`]). Secret values are wrapped in [`Secret`] the moment they
//! arrive and never appear in an error or a log line.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::config::Secret;

/// One version of a secret.
#[derive(Clone, Debug)]
pub struct SecretVersion {
    pub version: String,
    pub value: Secret,
}

#[derive(Debug, thiserror::Error)]
#[error("secrets manager: {0}")]
pub struct SecretError(String);

#[derive(Clone, Debug)]
pub struct SecretStore {
    client: aws_sdk_secretsmanager::Client,
}

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";

impl SecretStore {
    /// Region, credentials and endpoint from the standard AWS environment.
    pub async fn from_env() -> Self {
        Self::from_sdk(&crate::aws::load(None).await)
    }

    /// As [`SecretStore::from_env`], with the endpoint given explicitly (tests
    /// that run an endpoint of their own).
    pub async fn with_endpoint(endpoint_url: &str) -> Self {
        Self::from_sdk(&crate::aws::load(Some(endpoint_url)).await)
    }

    pub fn from_sdk(config: &crate::aws::SdkConfig) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// The SDK client, for callers that manage secrets (tests, tooling).
    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }

    /// The version of `arn` at `stage`, or `None` when no version holds it
    /// (a secret never rotated has no `AWSPREVIOUS`).
    pub async fn get(&self, arn: &str, stage: &str) -> Result<Option<SecretVersion>, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .version_stage(stage)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") && stage != CURRENT => {
                return Ok(None)
            }
            Err(e) => return Err(SecretError(format!("{}", DisplayErrorContext(e)))),
        };
        let value = out
            .secret_string
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SecretError(format!("{arn} has no string value at {stage}")))?;
        let version = out
            .version_id
            .ok_or_else(|| SecretError(format!("{arn} returned no version id")))?;
        Ok(Some(SecretVersion {
            version,
            value: Secret::new(value),
        }))
    }

    /// `AWSCURRENT` and, if there is one, `AWSPREVIOUS`, fetched concurrently.
    pub async fn current_and_previous(
        &self,
        arn: &str,
    ) -> Result<(SecretVersion, Option<SecretVersion>), SecretError> {
        let (current, previous) = tokio::join!(self.get(arn, CURRENT), self.get(arn, PREVIOUS));
        let current =
            current?.ok_or_else(|| SecretError(format!("{arn} has no {CURRENT} version")))?;
        // A previous version that cannot be read only costs the sessions signed
        // with it; the current key must still work.
        let previous = previous.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "previous signing key unavailable");
            None
        });
        Ok((current, previous))
    }

    /// The current value of `arn`, for the MongoDB URI.
    pub async fn current(&self, arn: &str) -> Result<Secret, SecretError> {
        self.get(arn, CURRENT)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| SecretError(format!("{arn} has no {CURRENT} version")))
    }
}
