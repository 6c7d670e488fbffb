//! The AWS SDK configuration, loaded once per execution environment and shared
//! by every AWS client of the service (Secrets Manager, EventBridge).
//!
//! One ring-only rustls HTTP client: no aws-lc build, no second TLS stack.
//! Region, credentials and endpoint come from the standard AWS environment;
//! tests and local runs point the clients at an emulator with the SDK's
//! `AWS_ENDPOINT_URL` (or per-service `AWS_ENDPOINT_URL_<SERVICE>`) override.
//! Credentials are resolved lazily, on the first call.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use aws_config::SdkConfig;

/// Loads the configuration; `endpoint_url` overrides the endpoint of every
/// client built from it (tests that run an endpoint of their own).
pub async fn load(endpoint_url: Option<&str>) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
