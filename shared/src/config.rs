//! Configuration from environment variables, read once per execution environment.
//!
//! Variables come in [`Section`]s and each function reads only the sections it
//! needs (the table in `functions.rs` names them; this module does not
//! know the functions, so the dependency runs one way); the
//! names of every variable live here, once, so that the README, template.yaml
//! and the code cannot drift apart (a test reads the template and compares).
//! Values are parsed and checked here; nothing else reads the environment
//! except the AWS SDK, for its standard `AWS_*` variables (region, credentials,
//! endpoint overrides).

use std::fmt;
use std::time::Duration;

/// A group of variables that belong together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Where the data lives.
    Database,
    /// Issuing and verifying tokens.
    Tokens,
    /// Hashing passwords.
    Passwords,
    /// Logs and metrics, read by every function.
    Telemetry,
    /// Publishing lifecycle events.
    Events,
    /// Reaching AWS services (Secrets Manager, EventBridge), read by every
    /// function; the SDK itself reads the standard `AWS_*` variables.
    Aws,
    /// How strong a new password must be.
    PasswordPolicy,
    /// Caps on how many organizations exist and how fast one source makes them.
    Limits,
    /// What provisioning requests from queues and the bus may carry.
    Provisioning,
    /// What a change of the admin's credentials demands of the caller.
    CredentialChange,
    /// How long a deleted organization can be restored.
    Deletion,
    /// How long audit entries are kept (the functions that write them).
    Audit,
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
/// The value of the metrics' `Service` dimension: the stack's name, so
/// that the stack's alarms find its own functions' metrics.
pub const SERVICE_NAME: &str = "SERVICE_NAME";
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
/// The least zxcvbn score (0-4) a new password must reach.
pub const PASSWORD_MIN_SCORE: &str = "PASSWORD_MIN_SCORE";
/// How many organizations may exist at once (0: no cap).
pub const MAX_ORGANIZATIONS: &str = "MAX_ORGANIZATIONS";
/// How many `POST /org/create` one source address may make per hour (0: no limit).
pub const CREATE_LIMIT_PER_SOURCE_PER_HOUR: &str = "CREATE_LIMIT_PER_SOURCE_PER_HOUR";
/// Whether provisioning requests may carry a plaintext `password` (`true`)
/// or only a `password_hash` (`false`, the default).
pub const PROVISIONING_ALLOW_PLAINTEXT: &str = "PROVISIONING_ALLOW_PLAINTEXT";
/// How recently a token must have been issued for it alone to change the
/// admin's email or password (older: log in again, or give `current_password`).
pub const CREDENTIAL_CHANGE_MAX_TOKEN_AGE_SECS: &str = "CREDENTIAL_CHANGE_MAX_TOKEN_AGE_SECS";
/// For how many days a deleted organization can be restored before the
/// purge removes it (0: a delete removes it at once).
pub const DELETED_RETENTION_DAYS: &str = "DELETED_RETENTION_DAYS";
/// For how many days audit entries are kept (a TTL index removes them).
pub const AUDIT_RETENTION_DAYS: &str = "AUDIT_RETENTION_DAYS";
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
    /// The variables of this section, in the order they are read.
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
            Section::Telemetry => &[SERVICE_NAME],
            Section::Events => &[EVENT_BUS_NAME],
            Section::Aws => &[AWS_CA_BUNDLE, LOCAL_AWS_ENDPOINT_URL],
            Section::PasswordPolicy => &[PASSWORD_MIN_SCORE],
            Section::Limits => &[MAX_ORGANIZATIONS, CREATE_LIMIT_PER_SOURCE_PER_HOUR],
            Section::Provisioning => &[PROVISIONING_ALLOW_PLAINTEXT],
            Section::CredentialChange => &[CREDENTIAL_CHANGE_MAX_TOKEN_AGE_SECS],
            Section::Deletion => &[DELETED_RETENTION_DAYS],
            Section::Audit => &[AUDIT_RETENTION_DAYS],
        }
    }
}

/// Every variable of `sections`, in the order [`Config::from_lookup`] reads them.
pub fn vars(sections: &[Section]) -> impl Iterator<Item = &'static str> + '_ {
    sections.iter().flat_map(|s| s.vars()).copied()
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

/// Caps that keep one client from filling the database with organizations:
/// each one is a collection, and MongoDB slows down with tens of thousands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// How many organizations may exist at once; `None`, no cap.
    pub max_organizations: Option<u64>,
    /// How many creates one source address may make per hour; `None`, no limit.
    pub creates_per_source_per_hour: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database: Option<DatabaseConfig>,
    pub tokens: Option<TokenConfig>,
    pub bcrypt_cost: u32,
    /// The least zxcvbn score a new password needs.
    pub password_min_score: u8,
    pub limits: Limits,
    /// Whether provisioning requests may carry a plaintext password.
    pub provisioning_plaintext: bool,
    /// The age past which a token alone no longer changes credentials.
    pub credential_change_max_token_age: Duration,
    /// How long a deleted organization stays restorable; none, not at all.
    pub deleted_retention: Option<Duration>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Where lifecycle events go; none configured, none are recorded.
    pub event_bus: Option<String>,
    /// The path of extra certificate authorities for the AWS clients.
    pub aws_ca_bundle: Option<String>,
    /// The endpoint of every AWS client, when not AWS's own.
    pub aws_endpoint_url: Option<String>,
    /// The metrics' `Service` dimension.
    pub service_name: String,
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
/// The highest bcrypt cost this service runs: the template's bound on
/// `BcryptCost`, and the most a provisioned hash may ask for. One verify at
/// 14 takes about a second on a Lambda vCPU; 18 would outlast the timeout.
pub const MAX_BCRYPT_COST: u32 = 14;
pub const DEFAULT_PASSWORD_MIN_SCORE: u8 = 3;
pub const DEFAULT_MAX_ORGANIZATIONS: u64 = 10_000;
pub const DEFAULT_CREATE_LIMIT_PER_SOURCE_PER_HOUR: u64 = 20;
pub const DEFAULT_CREDENTIAL_CHANGE_MAX_TOKEN_AGE: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_DELETED_RETENTION_DAYS: u64 = 30;
pub const DEFAULT_AUDIT_RETENTION_DAYS: u64 = 400;
/// HS256 wants a key at least as long as its 256-bit output (RFC 7518 3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads the process environment's variables of `sections` (a
    /// function's `Function::sections`).
    pub fn from_env(sections: &[Section]) -> Result<Self, ConfigError> {
        Self::from_lookup(sections, |name| std::env::var(name).ok())
    }

    /// Reads the variables of `sections` through `get`, which the tests
    /// replace to see exactly which names are read.
    pub fn from_lookup(
        sections: &[Section],
        mut get: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // Read every variable before judging any, so the set read is the same
        // whatever the values are.
        let mut values = std::collections::HashMap::new();
        for name in vars(sections) {
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
            let key = secret_source(var(JWT_SECRET), var(JWT_SECRET_ARN), JWT_SECRET)?;
            if let SecretSource::Value(secret) = &key {
                if secret.expose().len() < MIN_JWT_SECRET_BYTES {
                    return Err(ConfigError(format!(
                        "{JWT_SECRET} must be at least {MIN_JWT_SECRET_BYTES} bytes"
                    )));
                }
            }
            Some(TokenConfig {
                key,
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
            number(
                BCRYPT_COST,
                var,
                DEFAULT_BCRYPT_COST as u64,
                4..=MAX_BCRYPT_COST as u64,
            )? as u32
        } else {
            DEFAULT_BCRYPT_COST
        };

        let password_min_score = if sections.contains(&Section::PasswordPolicy) {
            number(
                PASSWORD_MIN_SCORE,
                var,
                DEFAULT_PASSWORD_MIN_SCORE as u64,
                0..=4,
            )? as u8
        } else {
            DEFAULT_PASSWORD_MIN_SCORE
        };

        let limits = if sections.contains(&Section::Limits) {
            let cap = |name, default| {
                number(name, var, default, 0..=u32::MAX as u64).map(|n| Some(n).filter(|&n| n > 0))
            };
            Limits {
                max_organizations: cap(MAX_ORGANIZATIONS, DEFAULT_MAX_ORGANIZATIONS)?,
                creates_per_source_per_hour: cap(
                    CREATE_LIMIT_PER_SOURCE_PER_HOUR,
                    DEFAULT_CREATE_LIMIT_PER_SOURCE_PER_HOUR,
                )?,
            }
        } else {
            Limits::default()
        };

        let provisioning_plaintext = if sections.contains(&Section::Provisioning) {
            flag(
                PROVISIONING_ALLOW_PLAINTEXT,
                var(PROVISIONING_ALLOW_PLAINTEXT),
            )?
        } else {
            false
        };

        let credential_change_max_token_age = if sections.contains(&Section::CredentialChange) {
            Duration::from_secs(number(
                CREDENTIAL_CHANGE_MAX_TOKEN_AGE_SECS,
                var,
                DEFAULT_CREDENTIAL_CHANGE_MAX_TOKEN_AGE.as_secs(),
                0..=86_400,
            )?)
        } else {
            DEFAULT_CREDENTIAL_CHANGE_MAX_TOKEN_AGE
        };

        let deleted_retention = if sections.contains(&Section::Deletion) {
            let days = number(
                DELETED_RETENTION_DAYS,
                var,
                DEFAULT_DELETED_RETENTION_DAYS,
                0..=3_650,
            )?;
            Some(Duration::from_secs(days * 86_400)).filter(|d| !d.is_zero())
        } else {
            None
        };

        let audit_days = if sections.contains(&Section::Audit) {
            number(
                AUDIT_RETENTION_DAYS,
                var,
                DEFAULT_AUDIT_RETENTION_DAYS,
                1..=3_650,
            )?
        } else {
            DEFAULT_AUDIT_RETENTION_DAYS
        };
        let audit_retention = Duration::from_secs(audit_days * 86_400);

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

        let service_name =
            var(SERVICE_NAME).unwrap_or_else(|| crate::telemetry::metric::LOCAL_SERVICE.to_owned());

        Ok(Self {
            database,
            tokens,
            bcrypt_cost,
            password_min_score,
            limits,
            provisioning_plaintext,
            credential_change_max_token_age,
            deleted_retention,
            audit_retention,
            event_bus,
            aws_ca_bundle,
            aws_endpoint_url,
            service_name,
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

/// `true` or `false` (unset: `false`), as CloudFormation's strings give them.
fn flag(name: &str, raw: Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ConfigError(format!("{name} must be true or false"))),
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
mod tests;
