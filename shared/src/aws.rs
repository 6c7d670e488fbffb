//! The AWS SDK configuration, loaded once per execution environment and shared
//! by every AWS client of the service (Secrets Manager, EventBridge).
//!
//! One ring-only rustls HTTP client: no aws-lc build, no second TLS stack.
//! Region, credentials and endpoint come from the standard AWS environment;
//! tests and local runs point the clients at an emulator with the SDK's
//! `AWS_ENDPOINT_URL` (or per-service `AWS_ENDPOINT_URL_<SERVICE>`) override.
//! Credentials are resolved lazily, on the first call.
//!
//! The client trusts a compiled-in set of certificate authorities, not the
//! system store: reading and parsing /etc/ssl/certs was a measurable share of
//! every cold start (BENCHMARKS.md), on the path of the first secret fetch. AWS
//! endpoints (public, FIPS and VPC interface endpoints alike) present
//! certificates from Amazon Trust Services, so the built-in set is exactly
//! that CA family's roots, taken from the Mozilla root program
//! (`webpki-root-certs`) by `build.rs`. An endpoint that chains elsewhere (an
//! emulator or proxy with its own CA) is trusted by naming its CA file in
//! `AWS_CA_BUNDLE`, the variable the other AWS SDKs and the CLI read for the
//! same purpose.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use aws_config::SdkConfig;

/// The Amazon Trust Services roots (Amazon Root CA 1-4 and the Starfield
/// Services root that cross-signs them), as PEM: picked from the Mozilla set
/// by `build.rs`, so a cold start neither searches nor encodes anything.
const BUILT_IN_ROOTS_PEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aws-roots.pem"));

/// Certificate authorities the AWS clients trust in addition to the
/// built-in ones: PEM certificates, each checked to be a usable root.
#[derive(Clone)]
pub struct CaBundle {
    pem: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("CA bundle: {0}")]
pub struct CaBundleError(String);

impl CaBundle {
    /// Checks `pem`: at least one certificate, every one parsable as a trust
    /// anchor (the SDK would otherwise fail on it at its first call).
    pub fn from_pem(pem: Vec<u8>) -> Result<Self, CaBundleError> {
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| CaBundleError(format!("not PEM certificates: {e}")))?;
            webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| CaBundleError(format!("certificate {}: {e}", count + 1)))?;
            count += 1;
        }
        if count == 0 {
            return Err(CaBundleError("no certificate in it".into()));
        }
        Ok(Self { pem })
    }

    /// Reads and checks the PEM file at `path`.
    pub fn read(path: &str) -> Result<Self, CaBundleError> {
        let pem = std::fs::read(path).map_err(|e| CaBundleError(format!("{path}: {e}")))?;
        Self::from_pem(pem)
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// Loads the configuration; `endpoint_url` overrides the endpoint of every
/// client built from it (tests that run an endpoint of their own).
pub async fn load(endpoint_url: Option<&str>) -> SdkConfig {
    load_trusting(endpoint_url, None).await
}

/// As [`load`], also trusting the authorities in `extra`.
pub async fn load_trusting(endpoint_url: Option<&str>, extra: Option<&CaBundle>) -> SdkConfig {
    let mut roots = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(BUILT_IN_ROOTS_PEM);
    if let Some(extra) = extra {
        roots = roots.with_pem_certificate(extra.pem.clone());
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context(roots))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

fn tls_context(roots: TrustStore) -> TlsContext {
    // `build` cannot fail in this version of the client; were it to, the
    // SDK's default (the system store) is slower but just as safe.
    TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_roots_are_the_five_amazon_trust_services_roots() {
        let roots: Vec<_> = CertificateDer::pem_slice_iter(BUILT_IN_ROOTS_PEM)
            .collect::<Result<_, _>>()
            .expect("PEM");
        assert_eq!(roots.len(), 5);
        for root in &roots {
            webpki::anchor_from_trusted_cert(root).expect("a usable trust anchor");
            assert!(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(root),
                "every built-in root is one of the Mozilla set"
            );
        }
        let has = |name: &str| {
            roots
                .iter()
                .filter(|c| c.as_ref().windows(name.len()).any(|w| w == name.as_bytes()))
                .count()
        };
        for n in 1..=4 {
            assert_eq!(has(&format!("Amazon Root CA {n}")), 1);
        }
        assert_eq!(has("Starfield Services Root Certificate Authority - G2"), 1);
        assert!(CaBundle::from_pem(BUILT_IN_ROOTS_PEM.to_vec()).is_ok());
    }

    #[test]
    fn a_ca_bundle_must_hold_usable_certificates() {
        for bad in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(CaBundle::from_pem(bad.to_vec()).is_err(), "{bad:?}");
        }
        assert!(CaBundle::read("/nonexistent/ca.pem").is_err());
    }
}
