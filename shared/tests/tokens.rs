//! Tokens and signing keys: the gateway authorizer driven with the fixture in
//! `events/`, hostile tokens per RFC 8725, and the key provider against a local
//! Secrets Manager endpoint (moto, named by `AWS_ENDPOINT_URL`; `make test`
//! starts it): rotation, outage, cold start without a reachable secret.

mod support;

use std::process::{Child, Command};
use std::time::Duration;

use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use shared::auth::{KeyProvider, Tokens};
use shared::config::{Config, SecretSource, TokenConfig};
use shared::error::ApiError;
use shared::handlers;
use shared::secrets::SecretStore;
use support::*;

/// Builds a token by hand, so the tests can send what no honest issuer would.
fn forge(header: Value, claims: Value, secret: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    let now = now();
    json!({"iss": "org-service", "aud": "org-service-api", "sub": "65f1c0ffee0000000000a001",
           "org": "65f1c0ffee0000000000b001", "iat": now, "nbf": now, "exp": now + 600})
}

fn header() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": "local"})
}

// ------------------------------------------------------------- authorizer

#[tokio::test]
async fn the_authorizer_allows_a_valid_token_and_passes_its_ids_on() {
    let t = TestApp::new().await;
    let (org, token) = t.create_and_login("acme").await;

    let r = handlers::authorize(&t.app, authorizer_event(&token)).await;

    assert!(r.is_authorized);
    assert_eq!(r.context["organization_id"], org["organization_id"]);
    assert_eq!(r.context["admin_id"], org["admin_id"]);
    t.drop().await;
}

#[tokio::test]
async fn the_authorizer_denies_expired_foreign_forged_and_tampered_tokens() {
    let t = TestApp::new().await;
    let (org, _) = t.create_and_login("acme").await;
    // Claims of the real admin, so that only what each case changes is wrong.
    let claims = || {
        let mut c = claims();
        c["sub"] = org["admin_id"].clone();
        c["org"] = org["organization_id"].clone();
        c
    };
    let app = &t.app;
    let good = forge(header(), claims(), JWT_SECRET);
    assert!(
        handlers::authorize(app, authorizer_event(&good))
            .await
            .is_authorized,
        "the forging helper must be right"
    );

    let with = |field: &str, value: Value| {
        let mut c = claims();
        c[field] = value;
        forge(header(), c, JWT_SECRET)
    };
    let without = |field: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(field);
        forge(header(), c, JWT_SECRET)
    };
    let mut tampered = good.clone();
    let dot = tampered.find('.').unwrap();
    tampered.replace_range(dot + 1..dot + 3, "ey");
    tampered.insert(dot + 5, 'A');

    let mut cases = vec![
        ("expired", with("exp", json!(now() - 600))),
        ("not yet valid", with("nbf", json!(now() + 600))),
        ("issued in the future", with("iat", json!(now() + 600))),
        ("wrong audience", with("aud", json!("another-api"))),
        ("wrong issuer", with("iss", json!("someone-else"))),
        ("no exp", without("exp")),
        ("no iss", without("iss")),
        ("no aud", without("aud")),
        ("no sub", without("sub")),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": "JWT", "kid": "local"}).to_string()),
                URL_SAFE_NO_PAD.encode(claims().to_string())
            ),
        ),
        ("tampered", tampered),
        ("empty", String::new()),
        ("garbage", "a.b.c".to_owned()),
    ];
    // The admin's own claims under a header, or signed with a key, the
    // service never uses.
    let headers = [
        (
            "HS512 header",
            json!({"alg": "HS512", "typ": "JWT", "kid": "local"}),
            JWT_SECRET,
        ),
        (
            "no typ",
            json!({"alg": "HS256", "kid": "local"}),
            JWT_SECRET,
        ),
        (
            "other typ",
            json!({"alg": "HS256", "typ": "at+jwt+x", "kid": "local"}),
            JWT_SECRET,
        ),
        ("no kid", json!({"alg": "HS256", "typ": "JWT"}), JWT_SECRET),
        (
            "unknown kid",
            json!({"alg": "HS256", "typ": "JWT", "kid": "v9"}),
            JWT_SECRET,
        ),
        ("another key", header(), "another-key"),
        (
            "jku is not a key source",
            json!({"alg": "HS256", "typ": "JWT", "kid": "local", "jku": "https://attacker.example/jwks"}),
            "attacker-key",
        ),
        (
            "embedded jwk is not a key source",
            json!({"alg": "HS256", "typ": "JWT", "kid": "local", "jwk": {"kty": "oct", "k": "YXR0YWNrZXIta2V5"}}),
            "attacker-key",
        ),
    ];
    cases.extend(
        headers
            .into_iter()
            .map(|(what, h, secret)| (what, forge(h, claims(), secret))),
    );
    for (what, token) in cases {
        let r = handlers::authorize(app, authorizer_event(&token)).await;
        assert!(!r.is_authorized, "{what} was authorized");
        assert_eq!(r.context, json!({}), "{what}");
    }
    let mut no_header = authorizer_event("x");
    no_header.headers.clear();
    no_header.identity_source = None;
    assert!(!handlers::authorize(app, no_header).await.is_authorized);
    t.drop().await;
}

// ---------------------------------------------------------- secrets manager

async fn create_secret(store: &SecretStore, value: &str) -> String {
    store
        .client()
        .create_secret()
        .name(format!("jwt-{}", fresh_db_name()))
        .secret_string(value)
        .send()
        .await
        .expect("create a secret on the local endpoint")
        .arn
        .unwrap()
}

async fn rotate(store: &SecretStore, arn: &str, value: &str) {
    store
        .client()
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

fn managed_config(arn: &str, cache_ttl: Duration) -> TokenConfig {
    TokenConfig {
        key: SecretSource::SecretsManager {
            arn: arn.to_owned(),
        },
        key_cache_ttl: cache_ttl,
        ..token_config()
    }
}

fn managed_tokens(store: &SecretStore, arn: &str, cache_ttl: Duration) -> Tokens {
    let cfg = managed_config(arn, cache_ttl);
    Tokens::new(
        KeyProvider::from_source(&cfg.key, Some(store.clone()), cache_ttl).unwrap(),
        &cfg,
    )
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rotation_logs_nobody_out_and_new_tokens_use_the_new_key() {
    let store = SecretStore::from_env().await;
    let arn = create_secret(&store, "first-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    let warm = managed_tokens(&store, &arn, Duration::ZERO);
    let before = warm.issue("a", "o", 0).await.unwrap();

    rotate(&store, &arn, "second-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").await;

    assert!(
        warm.verify(&before).await.is_ok(),
        "a warm environment still accepts the old key"
    );
    let after = warm.issue("a", "o", 0).await.unwrap();
    assert_ne!(kid(&after), kid(&before), "new tokens name the new version");
    let cold = managed_tokens(&store, &arn, Duration::from_secs(300));
    assert!(
        cold.verify(&before).await.is_ok(),
        "a cold start accepts AWSPREVIOUS"
    );
    assert!(cold.verify(&after).await.is_ok());
    let never_in_secret = forge(
        json!({"alg": "HS256", "typ": "JWT", "kid": kid(&after)}),
        claims(),
        "never-in-the-secret",
    );
    assert!(cold.verify(&never_in_secret).await.is_err());

    rotate(&store, &arn, "third-key-ccccccccccccccccccccccccccccccccc").await;
    let later = managed_tokens(&store, &arn, Duration::from_secs(300));
    assert!(
        later.verify(&before).await.is_err(),
        "two rotations retire a key"
    );
    assert!(later.verify(&after).await.is_ok());
}

#[tokio::test]
async fn a_signing_key_shorter_than_32_bytes_is_never_used() {
    let store = SecretStore::from_env().await;
    let arn = create_secret(&store, "short-key").await;
    let tokens = managed_tokens(&store, &arn, Duration::ZERO);
    assert!(
        matches!(
            tokens.issue("a", "o", 0).await,
            Err(ApiError::Unavailable { .. })
        ),
        "no key to sign with: a 503, not a token signed with 9 bytes"
    );

    // A good key, then a short one: the cached good key stays in use.
    rotate(&store, &arn, "first-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    let before = tokens.issue("a", "o", 0).await.unwrap();
    rotate(&store, &arn, "short-again").await;
    let still = tokens.issue("a", "o", 0).await.unwrap();
    assert_eq!(kid(&still), kid(&before), "the short version is not taken");
    assert!(tokens.verify(&before).await.is_ok());

    // A short previous version is dropped: what it signed no longer verifies.
    let arn = create_secret(&store, "tiny").await;
    rotate(&store, &arn, "second-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").await;
    let tokens = managed_tokens(&store, &arn, Duration::ZERO);
    let signed_with_tiny = forge(
        json!({"alg": "HS256", "typ": "JWT", "kid": previous_version(&store, &arn).await}),
        claims(),
        "tiny",
    );
    assert!(tokens.verify(&signed_with_tiny).await.is_err());
    assert!(tokens.issue("a", "o", 0).await.is_ok());
}

async fn previous_version(store: &SecretStore, arn: &str) -> String {
    store
        .current_and_previous(arn)
        .await
        .unwrap()
        .1
        .expect("a previous version")
        .version
}

#[tokio::test]
async fn an_unknown_kid_refreshes_at_most_once_per_interval() {
    let store = SecretStore::from_env().await;
    let arn = create_secret(&store, "first-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    let tokens = managed_tokens(&store, &arn, Duration::from_secs(300));
    tokens.issue("a", "o", 0).await.unwrap();
    let bogus = forge(
        json!({"alg": "HS256", "typ": "JWT", "kid": "bogus"}),
        claims(),
        "x",
    );
    assert!(tokens.verify(&bogus).await.is_err());

    // Another environment rotates and issues with the new version right away.
    rotate(&store, &arn, "second-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").await;
    let other = managed_tokens(&store, &arn, Duration::from_secs(300));
    let fresh = other.issue("a", "o", 0).await.unwrap();

    // Within the interval the bogus kid already spent the refresh: a stream of
    // unknown kids costs one Secrets Manager call, not one per token.
    assert!(tokens.verify(&fresh).await.is_err());
    assert!(other.verify(&fresh).await.is_ok());
}

struct LocalEndpoint {
    child: Child,
    url: String,
}

impl LocalEndpoint {
    fn start() -> Self {
        let port = free_port();
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server on PATH (make test puts .venv/bin there)");
        // Built before waiting, so that a failure below still stops it (Drop).
        let endpoint = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        assert!(wait_for_port(port), "moto_server did not start");
        endpoint
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_secret_store_is_unreachable() {
    let mut endpoint = LocalEndpoint::start();
    let store = SecretStore::with_endpoint(&endpoint.url).await;
    let arn = create_secret(&store, "first-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    // A zero TTL makes every call try the store first.
    let tokens = managed_tokens(&store, &arn, Duration::ZERO);
    let token = tokens.issue("a", "o", 0).await.unwrap();

    endpoint.stop();

    assert!(tokens.verify(&token).await.is_ok());
    assert!(tokens.issue("a", "o", 0).await.is_ok());
}

#[tokio::test]
async fn a_cold_start_without_a_reachable_secret_answers_503_and_denies() {
    let t = TestApp::new().await;
    t.create("acme", "admin@acme.example").await;
    let unreachable = SecretStore::with_endpoint("http://127.0.0.1:9").await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt-key";
    let mut config: Config = t.app.config.clone();
    config.tokens = Some(managed_config(arn, Duration::from_secs(300)));
    let app = shared::App::with_secret_store(config.clone(), Some(unreachable.clone()));

    let login = reply(handlers::login(&app, login_request("admin@acme.example", PASSWORD)).await);
    assert_eq!(login.status, 503, "{}", login.body);
    assert_eq!(login.body["error"]["code"], "service_unavailable");
    let well_formed = forge(header(), claims(), "some-key");
    let del = reply(handlers::delete(&app, delete(Some(&well_formed), "acme")).await);
    assert_eq!(del.status, 503);
    assert!(
        !handlers::authorize(&app, authorizer_event(&well_formed))
            .await
            .is_authorized
    );

    // The MongoDB URI behind an unreachable secret: 503 as well.
    let app = with_database_secret(config, arn, unreachable);
    assert_eq!(
        reply(handlers::get(&app, get_org("acme")).await).status,
        503
    );
    t.drop().await;
}

#[tokio::test]
async fn the_mongodb_uri_can_come_from_secrets_manager() {
    let t = TestApp::new().await;
    t.create("acme", "admin@acme.example").await;
    let store = SecretStore::from_env().await;
    let arn = create_secret(&store, &mongodb_uri()).await;
    let app = with_database_secret(t.app.config.clone(), &arn, store);

    let r = reply(handlers::get(&app, get_org("acme")).await);

    assert_eq!(r.status, 200, "{}", r.body);
    t.drop().await;
}
