//! The AWS clients' trust store against a real TLS endpoint: a TLS proxy
//! (its own CA, made here) in front of the local Secrets Manager.
//!
//! The built-in store holds the Amazon Trust Services roots only, so a CA of
//! one's own must be refused, whatever the system store trusts; naming it in
//! `AWS_CA_BUNDLE` is the one way to trust it.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use shared::aws::{self, CaBundle};
use shared::config::{Config, AWS_CA_BUNDLE, JWT_SECRET_ARN, MONGODB_URI};
use shared::functions::Function;
use shared::secrets::{SecretStore, CURRENT};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate for `localhost` signed by it.
struct TestPki {
    ca_pem: String,
    server: ServerConfig,
}

fn test_pki() -> TestPki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "org-service test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
            .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server,
    }
}

/// Serves TLS on a free port and relays each connection, in plain TCP, to
/// the local Secrets Manager; returns the `https://localhost:PORT` URL.
async fn tls_proxy(server: ServerConfig) -> String {
    let upstream = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL: the local AWS endpoint (make test sets it)");
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://localhost:{port}")
}

async fn put_secret(store: &SecretStore, value: &str) -> Result<String, String> {
    let name = format!("tls-test-{}", mongodb::bson::oid::ObjectId::new());
    store
        .client()
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map(|out| out.arn.unwrap_or_default())
        .map_err(|e| format!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
}

#[tokio::test]
async fn the_aws_clients_refuse_an_unknown_ca_and_trust_one_named_in_the_bundle() {
    let pki = test_pki();
    let url = tls_proxy(pki.server).await;

    let built_in = SecretStore::from_sdk(&aws::load(Some(&url)).await);
    let refused = put_secret(&built_in, "never-stored").await;
    let error = refused.expect_err("a CA outside the built-in roots is refused");
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "the failure names the certificate: {error}"
    );

    let bundle = CaBundle::from_pem(pki.ca_pem.into_bytes()).unwrap();
    let trusting = SecretStore::from_sdk(&aws::load_trusting(Some(&url), Some(&bundle)).await);
    let arn = put_secret(&trusting, "over-tls-value").await.unwrap();
    let version = trusting.get(&arn, CURRENT).await.unwrap().unwrap();
    assert_eq!(version.value.expose(), "over-tls-value");
}

#[tokio::test]
async fn an_unusable_aws_ca_bundle_stops_the_function_at_init() {
    let dir = std::env::temp_dir().join(format!("ca-{}", mongodb::bson::oid::ObjectId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();

    for path in [
        not_pem.to_string_lossy().into_owned(),
        dir.join("missing.pem").to_string_lossy().into_owned(),
    ] {
        let config = Config::from_lookup(Function::Authorizer.sections(), |name| match name {
            JWT_SECRET_ARN => Some("arn:aws:secretsmanager:us-east-1:1:secret:k".to_owned()),
            MONGODB_URI => Some("mongodb://127.0.0.1:9".to_owned()),
            AWS_CA_BUNDLE => Some(path.clone()),
            _ => None,
        })
        .unwrap();
        let error = match shared::App::from_config(config).await {
            Ok(_) => panic!("{path}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(AWS_CA_BUNDLE), "{error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
