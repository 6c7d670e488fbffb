//! Configuration from environment variables, read once per execution environment.
//!
//! Each function reads only the sections it needs ([`Function::sections`]); the
//! names of every variable live here, once, so that the README, template.yaml
//! and the code cannot drift apart (a test reads the template and compares).
//! Values are parsed and checked here; nothing else reads the environment
//! except the AWS SDK, for its standard `AWS_*` variables (region, credentials,
//! endpoint overrides).

use std::fmt;
use std::time::Duration;

/// The Lambda functions of this service, by package name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Login,
    Create,
    Get,
    Rename,
    Delete,
    Authorizer,
}

/// Which indexes a function ensures during init ([`Function::indexes_at_start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartIndexes {
    /// None: the function only opens its connection (a `ping`).
    None,
    /// The unique indexes of organizations and admins.
    Unique,
    /// Every index, the expiry and outbox ones included.
    All,
}

/// A group of variables that belong together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Where the data lives.
    Database,
    /// Issuing and verifying tokens.
    Tokens,
    /// Hashing passwords.
    Passwords,
    /// Logging, read by every function.
    Logging,
    /// Publishing lifecycle events.
    Events,
    /// Reaching AWS services (Secrets Manager, EventBridge), read by every
    /// function; the SDK itself reads the standard `AWS_*` variables.
    Aws,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::Login,
        Function::Create,
        Function::Get,
        Function::Rename,
        Function::Delete,
        Function::Authorizer,
    ];

    /// The package (and binary) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Login => "login",
            Function::Create => "create",
            Function::Get => "get",
            Function::Rename => "rename",
            Function::Delete => "delete",
            Function::Authorizer => "authorizer",
        }
    }

    pub fn sections(self) -> &'static [Section] {
        use Section::*;
        match self {
            Function::Login => &[Logging, Aws, Database, Tokens, Passwords],
            Function::Create => &[Logging, Aws, Database, Passwords, Events],
            Function::Get => &[Logging, Aws, Database],
            Function::Rename => &[Logging, Aws, Database, Tokens, Passwords, Events],
            Function::Delete => &[Logging, Aws, Database, Tokens, Events],
            Function::Authorizer => &[Logging, Aws, Tokens],
        }
    }

    /// The indexes the function ensures while it starts, on the connection
    /// its first request then uses: create all of them (its request spends
    /// hundreds of milliseconds in bcrypt first), rename the unique ones its
    /// claim relies on; the others none (a delete claims nothing).
    pub fn indexes_at_start(self) -> StartIndexes {
        match self {
            Function::Create => StartIndexes::All,
            Function::Rename => StartIndexes::Unique,
            _ => StartIndexes::None,
        }
    }

    /// Every variable this function reads.
    pub fn env_vars(self) -> Vec<&'static str> {
        self.sections()
            .iter()
            .flat_map(|s| s.vars())
            .copied()
            .collect()
    }
}

pub const MONGODB_URI: &str = "MONGODB_URI";
pub const MONGODB_URI_SECRET_ARN: &str = "MONGODB_URI_SECRET_ARN";
pub const MASTER_DB: &str = "MASTER_DB";
pub const TENANT_DB: &str = "TENANT_DB";
pub const MONGODB_TIMEOUT_MS: &str = "MONGODB_TIMEOUT_MS";
pub const OPERATION_LEASE_SECS: &str = "OPERATION_LEASE_SECS";
pub const JWT_SECRET_ARN: &str = "JWT_SECRET_ARN";
pub const JWT_SECRET: &str = "JWT_SECRET";
pub const JWT_ISSUER: &str = "JWT_ISSUER";
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
pub const JWT_TTL_SECS: &str = "JWT_TTL_SECS";
pub const KEY_CACHE_TTL_SECS: &str = "KEY_CACHE_TTL_SECS";
pub const BCRYPT_COST: &str = "BCRYPT_COST";
pub const RUST_LOG: &str = "RUST_LOG";
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
/// A PEM file of certificate authorities the AWS clients trust besides the
/// built-in Amazon Trust Services roots (an emulator or proxy with its own
/// CA); the name the other AWS SDKs and the CLI use.
pub const AWS_CA_BUNDLE: &str = "AWS_CA_BUNDLE";
/// One endpoint for every AWS client, for local runs (an emulator such as
/// moto). Not the SDK's standard `AWS_ENDPOINT_URL`: the template declares
/// local-only variables empty, and the SDK's per-service lookup takes an
/// empty `AWS_ENDPOINT_URL` as the endpoint itself, which would break every
/// deployed call. This one is read here, empty as unset, and handed to the
/// SDK only when set.
pub const LOCAL_AWS_ENDPOINT_URL: &str = "LOCAL_AWS_ENDPOINT_URL";

/// Variables meant for local runs only: a deployment sets the Secrets
/// Manager counterparts of the first two, and reaches AWS at its own
/// endpoints with the built-in CAs. The template declares each of them empty
/// (an empty value is unset), so that `sam local --env-vars` can fill them.
pub const LOCAL_ONLY_VARS: &[&str] = &[
    MONGODB_URI,
    JWT_SECRET,
    AWS_CA_BUNDLE,
    LOCAL_AWS_ENDPOINT_URL,
];

impl Section {
    pub fn vars(self) -> &'static [&'static str] {
        match self {
            Section::Database => &[
                MONGODB_URI,
                MONGODB_URI_SECRET_ARN,
                MASTER_DB,
                TENANT_DB,
                MONGODB_TIMEOUT_MS,
                OPERATION_LEASE_SECS,
            ],
            Section::Tokens => &[
                JWT_SECRET_ARN,
                JWT_SECRET,
                JWT_ISSUER,
                JWT_AUDIENCE,
                JWT_TTL_SECS,
                KEY_CACHE_TTL_SECS,
            ],
            Section::Passwords => &[BCRYPT_COST],
            Section::Logging => &[RUST_LOG],
            Section::Events => &[EVENT_BUS_NAME],
            Section::Aws => &[AWS_CA_BUNDLE, LOCAL_AWS_ENDPOINT_URL],
        }
    }
}

/// A string that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a value comes from: given directly, or held in Secrets Manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Value(Secret),
    SecretsManager { arn: String },
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub uri: SecretSource,
    pub master_db: String,
    pub tenant_db: String,
    /// Bounds server selection and connection establishment, so that an
    /// unreachable database is a prompt 503 rather than a Lambda timeout.
    pub timeout: Duration,
    /// How long an operation in progress (create, rename, delete) is presumed
    /// alive; past it, the next request that meets the organization finishes it.
    /// Must exceed the longest function timeout.
    pub operation_lease: Duration,
}

#[derive(Clone, Debug)]
pub struct TokenConfig {
    pub key: SecretSource,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    pub key_cache_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The function this configuration was read for.
    pub function: Function,
    pub database: Option<DatabaseConfig>,
    pub tokens: Option<TokenConfig>,
    pub bcrypt_cost: u32,
    /// Where lifecycle events go; none configured, none are recorded.
    pub event_bus: Option<String>,
    /// The path of extra certificate authorities for the AWS clients.
    pub aws_ca_bundle: Option<String>,
    /// The endpoint of every AWS client, when not AWS's own.
    pub aws_endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

pub const DEFAULT_MASTER_DB: &str = "master_org_db";
pub const DEFAULT_BCRYPT_COST: u32 = 12;

impl Config {
    /// Reads the process environment for `function`.
    pub fn from_env(function: Function) -> Result<Self, ConfigError> {
        Self::from_lookup(function, |name| std::env::var(name).ok())
    }

    /// Reads the variables of `function`'s sections through `get`, which the
    /// tests replace to see exactly which names are read.
    pub fn from_lookup(
        function: Function,
        mut get: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let sections = function.sections();
        // Read every variable before judging any, so the set read is the same
        // whatever the values are.
        let mut values = std::collections::HashMap::new();
        for name in function.env_vars() {
            if let Some(v) = get(name).filter(|v| !v.trim().is_empty()) {
                values.insert(name, v);
            }
        }
        let var = |name: &str| values.get(name).cloned();

        let database = if sections.contains(&Section::Database) {
            let uri = secret_source(var(MONGODB_URI), var(MONGODB_URI_SECRET_ARN), MONGODB_URI)?;
            let master_db = var(MASTER_DB).unwrap_or_else(|| DEFAULT_MASTER_DB.to_owned());
            check_db_name(MASTER_DB, &master_db)?;
            let tenant_db = var(TENANT_DB).unwrap_or_else(|| master_db.clone());
            check_db_name(TENANT_DB, &tenant_db)?;
            Some(DatabaseConfig {
                uri,
                master_db,
                tenant_db,
                timeout: Duration::from_millis(number(MONGODB_TIMEOUT_MS, var, 5_000, 1..=60_000)?),
                operation_lease: Duration::from_secs(number(
                    OPERATION_LEASE_SECS,
                    var,
                    120,
                    0..=86_400,
                )?),
            })
        } else {
            None
        };

        let tokens = if sections.contains(&Section::Tokens) {
            Some(TokenConfig {
                key: secret_source(var(JWT_SECRET), var(JWT_SECRET_ARN), JWT_SECRET)?,
                issuer: var(JWT_ISSUER).unwrap_or_else(|| "org-service".to_owned()),
                audience: var(JWT_AUDIENCE).unwrap_or_else(|| "org-service-api".to_owned()),
                ttl: Duration::from_secs(number(JWT_TTL_SECS, var, 3_600, 60..=86_400)?),
                key_cache_ttl: Duration::from_secs(number(
                    KEY_CACHE_TTL_SECS,
                    var,
                    300,
                    0..=86_400,
                )?),
            })
        } else {
            None
        };

        let bcrypt_cost = if sections.contains(&Section::Passwords) {
            number(BCRYPT_COST, var, DEFAULT_BCRYPT_COST as u64, 4..=31)? as u32
        } else {
            DEFAULT_BCRYPT_COST
        };

        let event_bus = if sections.contains(&Section::Events) {
            var(EVENT_BUS_NAME)
        } else {
            None
        };

        let (aws_ca_bundle, aws_endpoint_url) = if sections.contains(&Section::Aws) {
            (var(AWS_CA_BUNDLE), var(LOCAL_AWS_ENDPOINT_URL))
        } else {
            (None, None)
        };

        Ok(Self {
            function,
            database,
            tokens,
            bcrypt_cost,
            event_bus,
            aws_ca_bundle,
            aws_endpoint_url,
        })
    }

    pub fn database(&self) -> Result<&DatabaseConfig, ConfigError> {
        self.database
            .as_ref()
            .ok_or_else(|| ConfigError("this function has no database configuration".into()))
    }

    pub fn tokens(&self) -> Result<&TokenConfig, ConfigError> {
        self.tokens
            .as_ref()
            .ok_or_else(|| ConfigError("this function has no token configuration".into()))
    }
}

fn secret_source(
    value: Option<String>,
    arn: Option<String>,
    value_name: &str,
) -> Result<SecretSource, ConfigError> {
    match (arn, value) {
        (Some(arn), _) => Ok(SecretSource::SecretsManager { arn }),
        (None, Some(value)) => Ok(SecretSource::Value(Secret::new(value))),
        (None, None) => Err(ConfigError(format!(
            "set {value_name}_SECRET_ARN (deployed) or {value_name} (local runs)"
        ))),
    }
}

fn number(
    name: &str,
    var: impl Fn(&str) -> Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError(format!(
            "{name} must be a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// MongoDB database names: no `/\. "$*<>:|?` or NUL, under 64 bytes.
fn check_db_name(var: &str, name: &str) -> Result<(), ConfigError> {
    let bad = name.is_empty()
        || name.len() >= 64
        || name.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
            )
        });
    if bad {
        return Err(ConfigError(format!(
            "{var} is not a valid MongoDB database name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn each_function_reads_exactly_its_declared_variables() {
        for f in Function::ALL {
            let mut read = Vec::new();
            let _ = Config::from_lookup(f, |name| {
                read.push(name.to_owned());
                None
            });
            let declared: Vec<String> = f.env_vars().iter().map(|s| s.to_string()).collect();
            assert_eq!(read, declared, "{f:?}");
        }
    }

    #[test]
    fn defaults_apply_when_only_the_secrets_are_given() {
        let cfg = Config::from_lookup(
            Function::Login,
            lookup(&[(MONGODB_URI, "mongodb://localhost"), (JWT_SECRET, "k")]),
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
            Function::Get,
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
        let base = [(MONGODB_URI, "mongodb://x"), (JWT_SECRET, "k")];
        for (name, value) in [
            (BCRYPT_COST, "3"),
            (BCRYPT_COST, "twelve"),
            (MASTER_DB, "a.b"),
            (JWT_TTL_SECS, "0"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            assert!(
                Config::from_lookup(Function::Login, lookup(&pairs)).is_err(),
                "{name}={value}"
            );
        }
        assert!(Config::from_lookup(Function::Get, lookup(&[])).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = Config::from_lookup(
            Function::Login,
            lookup(&[
                (MONGODB_URI, "mongodb://u:hunter2@h"),
                (JWT_SECRET, "topsecret"),
            ]),
        )
        .unwrap();
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("topsecret"),
            "{text}"
        );
    }
}
