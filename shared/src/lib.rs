//! The common crate of the Organization Management Service.
//!
//! Every Lambda binary in `functions/*` is a thin `main` that builds an [`App`]
//! once per execution environment and hands requests to a handler here.
//!
//! - [`config`]: environment variables, per function, read once.
//! - [`domain`]: validated names, emails and passwords.
//! - [`store`]: MongoDB: the master database, tenant collections, and the
//!   crash-safe create / rename / delete sequences.
//! - [`auth`]: bcrypt, signing keys (Secrets Manager or local), JWTs.
//! - [`secrets`]: the Secrets Manager client.
//! - [`http`]: strict request parsing and JSON responses.
//! - [`handlers`]: one function per route, plus the gateway authorizer.
//! - [`error`]: the one error type and its HTTP mapping.
//! - [`telemetry`]: JSON logs.
//! - [`failpoint`]: test-only crash points.

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod failpoint;
pub mod handlers;
pub mod http;
pub mod secrets;
pub mod store;
pub mod telemetry;

pub use aws_lambda_events;
pub use lambda_http;
pub use lambda_runtime;

use tokio::sync::OnceCell;

use crate::auth::{KeyProvider, Tokens};
use crate::config::{Config, ConfigError, DatabaseConfig, Function, SecretSource};
use crate::error::ApiError;
use crate::secrets::SecretStore;
use crate::store::Store;

/// What one execution environment holds across invocations: configuration,
/// the MongoDB client (connected on first use, then reused) and the token
/// service with its key cache.
pub struct App {
    pub config: Config,
    database: Option<LazyStore>,
    tokens: Option<Tokens>,
}

struct LazyStore {
    cfg: DatabaseConfig,
    secrets: Option<SecretStore>,
    cell: OnceCell<Store>,
}

impl App {
    /// Reads the environment for `function` and builds what it needs. Nothing
    /// here waits on the network; [`App::warm`] starts the connection.
    pub async fn init(function: Function) -> Result<Self, ConfigError> {
        let config = Config::from_env(function)?;
        Ok(Self::from_config(config).await)
    }

    pub async fn from_config(config: Config) -> Self {
        let uses_secrets_manager =
            |s: &SecretSource| matches!(s, SecretSource::SecretsManager { .. });
        let needs_store = config
            .database
            .as_ref()
            .is_some_and(|d| uses_secrets_manager(&d.uri))
            || config
                .tokens
                .as_ref()
                .is_some_and(|t| uses_secrets_manager(&t.key));
        let secrets = if needs_store {
            Some(SecretStore::from_env().await)
        } else {
            None
        };
        Self::with_secret_store(config, secrets)
    }

    /// Builds from parts; the tests use it to point at their own endpoints.
    pub fn with_secret_store(config: Config, secrets: Option<SecretStore>) -> Self {
        let tokens = config.tokens.as_ref().and_then(|t| {
            match KeyProvider::from_source(&t.key, secrets.clone(), t.key_cache_ttl) {
                Ok(keys) => Some(Tokens::new(keys, t)),
                Err(e) => {
                    e.log();
                    None
                }
            }
        });
        let database = config.database.clone().map(|cfg| LazyStore {
            cfg,
            secrets,
            cell: OnceCell::new(),
        });
        Self {
            config,
            database,
            tokens,
        }
    }

    /// An app around an existing store (tests).
    pub fn with_store(config: Config, store: Store, tokens: Option<Tokens>) -> Self {
        let database = config.database.clone().map(|cfg| LazyStore {
            cfg,
            secrets: None,
            cell: OnceCell::new_with(Some(store)),
        });
        Self {
            config,
            database,
            tokens,
        }
    }

    /// The store, connecting on first use. A failure (URI secret unreachable)
    /// is a 503 for this request, and the next request tries again.
    pub async fn store(&self) -> Result<&Store, ApiError> {
        let db = self
            .database
            .as_ref()
            .ok_or_else(|| ApiError::internal("this function has no database"))?;
        db.cell
            .get_or_try_init(|| async {
                let uri = match &db.cfg.uri {
                    SecretSource::Value(uri) => uri.clone(),
                    SecretSource::SecretsManager { arn } => {
                        let secrets = db.secrets.as_ref().ok_or_else(|| {
                            ApiError::internal("no secret store for the MongoDB URI")
                        })?;
                        secrets
                            .current(arn)
                            .await
                            .map_err(|e| ApiError::unavailable("database configuration", e))?
                    }
                };
                Store::connect(&db.cfg, uri.expose()).await
            })
            .await
    }

    pub fn tokens(&self) -> Result<&Tokens, ApiError> {
        self.tokens
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("signing key", "no token configuration"))
    }

    /// Starts, during init, the round trips the first request would otherwise
    /// wait for. Failures are logged; requests retry them.
    pub async fn warm(&self) {
        if self.database.is_some() {
            if let Err(e) = self.store().await {
                e.log();
            }
        }
    }
}
