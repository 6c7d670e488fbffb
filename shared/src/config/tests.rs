//! The configuration's unit tests, each reading the sections it is about
//! (which function reads which is `functions.rs`'s concern, tested there).
use super::*;

/// What a function that only reads the database reads.
const DATABASE_ONLY: &[Section] = &[Section::Telemetry, Section::Aws, Section::Database];
/// What a function that verifies tokens reads.
const VERIFIES_TOKENS: &[Section] = &[
    Section::Telemetry,
    Section::Aws,
    Section::Database,
    Section::Tokens,
];
/// What a function that issues tokens and checks passwords reads.
const TOKENS_AND_PASSWORDS: &[Section] = &[
    Section::Telemetry,
    Section::Aws,
    Section::Database,
    Section::Tokens,
    Section::Passwords,
];
/// What a function that provisions organizations reads.
const PROVISIONING: &[Section] = &[
    Section::Telemetry,
    Section::Aws,
    Section::Database,
    Section::Passwords,
    Section::PasswordPolicy,
    Section::Limits,
    Section::Provisioning,
];

fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

const KEY: &str = "a-local-signing-key-of-32-bytes-or-more";

#[test]
fn defaults_apply_when_only_the_secrets_are_given() {
    let cfg = Config::from_lookup(
        TOKENS_AND_PASSWORDS,
        lookup(&[(MONGODB_URI, "mongodb://localhost"), (JWT_SECRET, KEY)]),
    )
    .unwrap();
    let db = cfg.database().unwrap();
    assert_eq!(db.master_db, DEFAULT_MASTER_DB);
    assert_eq!(db.tenant_db, DEFAULT_MASTER_DB);
    assert_eq!(cfg.bcrypt_cost, 12);
    assert_eq!(cfg.tokens().unwrap().ttl, Duration::from_secs(3600));
}

#[test]
fn a_secret_arn_wins_over_a_local_value() {
    let cfg = Config::from_lookup(
        DATABASE_ONLY,
        lookup(&[
            (MONGODB_URI, "mongodb://x"),
            (MONGODB_URI_SECRET_ARN, "arn:x"),
        ]),
    )
    .unwrap();
    assert_eq!(
        cfg.database().unwrap().uri,
        SecretSource::SecretsManager {
            arn: "arn:x".into()
        }
    );
}

#[test]
fn bad_values_are_refused_at_start_up() {
    let base = [(MONGODB_URI, "mongodb://x"), (JWT_SECRET, KEY)];
    for (name, value) in [
        (BCRYPT_COST, "3"),
        (BCRYPT_COST, "twelve"),
        (MASTER_DB, "a.b"),
        (JWT_TTL_SECS, "0"),
        (BCRYPT_COST, "15"),
    ] {
        let mut pairs = base.to_vec();
        pairs.push((name, value));
        assert!(
            Config::from_lookup(TOKENS_AND_PASSWORDS, lookup(&pairs)).is_err(),
            "{name}={value}"
        );
    }
    assert!(Config::from_lookup(DATABASE_ONLY, lookup(&[])).is_err());
}

#[test]
fn a_short_local_signing_key_is_refused_with_the_variable_named() {
    let err = Config::from_lookup(
        VERIFIES_TOKENS,
        lookup(&[
            (MONGODB_URI, "mongodb://x"),
            (JWT_SECRET, "0123456789abcdef"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains(JWT_SECRET), "{err}");
    assert!(!err.to_string().contains("0123456789abcdef"), "{err}");
}

#[test]
fn limits_default_on_and_zero_turns_each_off() {
    let base = [(MONGODB_URI, "mongodb://x")];
    let cfg = Config::from_lookup(PROVISIONING, lookup(&base)).unwrap();
    assert_eq!(
        cfg.limits.max_organizations,
        Some(DEFAULT_MAX_ORGANIZATIONS)
    );
    assert_eq!(cfg.limits.creates_per_source_per_hour, Some(20));
    assert!(!cfg.provisioning_plaintext);
    assert_eq!(cfg.password_min_score, 3);
    let mut off = base.to_vec();
    off.extend([
        (MAX_ORGANIZATIONS, "0"),
        (CREATE_LIMIT_PER_SOURCE_PER_HOUR, "0"),
        (PROVISIONING_ALLOW_PLAINTEXT, "true"),
    ]);
    let cfg = Config::from_lookup(PROVISIONING, lookup(&off)).unwrap();
    assert_eq!(cfg.limits, Limits::default());
    assert!(cfg.provisioning_plaintext);
    let mut bad = base.to_vec();
    bad.push((PROVISIONING_ALLOW_PLAINTEXT, "yes"));
    assert!(Config::from_lookup(PROVISIONING, lookup(&bad)).is_err());
}

#[test]
fn secrets_do_not_print() {
    let cfg = Config::from_lookup(
        TOKENS_AND_PASSWORDS,
        lookup(&[
            (MONGODB_URI, "mongodb://u:hunter2@h"),
            (JWT_SECRET, "topsecret-topsecret-topsecret-topsecret"),
        ]),
    )
    .unwrap();
    let text = format!("{cfg:?}");
    assert!(
        !text.contains("hunter2") && !text.contains("topsecret"),
        "{text}"
    );
}
