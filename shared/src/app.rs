//! [`App`]: what one execution environment holds across invocations (its
//! configuration, the MongoDB store connected on first use, the token
//! service with its key cache, the event publisher) and the warm-up that
//! starts the slow round trips while the runtime starts.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;

use crate::auth::{KeyProvider, Tokens};
use crate::config::{Config, ConfigError, DatabaseConfig, SecretSource};
use crate::error::ApiError;
use crate::events::Publisher;
use crate::functions::{Function, StartIndexes};
use crate::secrets::SecretStore;
use crate::store::Store;
use crate::telemetry::{self, Metric};

/// How many deleted organizations one purge run removes, and how many
/// records of interrupted operations it settles: each removal drops a
/// collection, and the hourly schedule goes on with the rest.
pub const PURGE_BATCH: usize = 50;

fn report(flushed: Result<crate::events::Flushed, ApiError>) {
    if let Ok(done) = &flushed {
        telemetry::add(Metric::OutboxPublished, done.published as u64);
    }
    match flushed {
        Ok(done) if done.failed > 0 => {
            tracing::warn!(
                published = done.published,
                failed = done.failed,
                "some lifecycle events are pending"
            )
        }
        Ok(_) => {}
        Err(e) => e.log(),
    }
}

/// What one execution environment holds across invocations: configuration,
/// the MongoDB client (connected on first use, then reused) and the token
/// service with its key cache.
pub struct App {
    pub config: Config,
    database: Option<LazyStore>,
    tokens: Option<Tokens>,
    publisher: Option<Publisher>,
}

struct LazyStore {
    cfg: DatabaseConfig,
    secrets: Option<SecretStore>,
    cell: OnceCell<Store>,
    /// Set once an invocation has arrived (or, outside the Lambda runtime,
    /// a request has asked for the store): the request's own first command
    /// will open the connection, so the warm-up need not.
    wanted: AtomicBool,
}

impl LazyStore {
    fn new(cfg: DatabaseConfig, secrets: Option<SecretStore>, cell: OnceCell<Store>) -> Self {
        Self {
            cfg,
            secrets,
            cell,
            wanted: AtomicBool::new(false),
        }
    }
}

impl App {
    /// Reads the environment for `function` and builds what it needs. Nothing
    /// here waits on the network; [`App::warm`] starts the connection.
    pub async fn init(function: Function) -> Result<Self, ConfigError> {
        let config = Config::from_env(function.sections())?;
        Self::from_config(config).await
    }

    /// Builds what `config` asks for; fails only on an unreadable or invalid
    /// `AWS_CA_BUNDLE`.
    pub async fn from_config(config: Config) -> Result<Self, ConfigError> {
        let uses_secrets_manager =
            |s: &SecretSource| matches!(s, SecretSource::SecretsManager { .. });
        let needs_secrets = config
            .database
            .as_ref()
            .is_some_and(|d| uses_secrets_manager(&d.uri))
            || config
                .tokens
                .as_ref()
                .is_some_and(|t| uses_secrets_manager(&t.key));
        let sdk = if needs_secrets || config.event_bus.is_some() {
            let extra_roots = match &config.aws_ca_bundle {
                Some(path) => Some(crate::aws::CaBundle::read(path).map_err(|e| {
                    ConfigError::new(format!("{}: {e}", crate::config::AWS_CA_BUNDLE))
                })?),
                None => None,
            };
            Some(
                crate::aws::load_trusting(config.aws_endpoint_url.as_deref(), extra_roots.as_ref())
                    .await,
            )
        } else {
            None
        };
        let secrets = sdk
            .as_ref()
            .filter(|_| needs_secrets)
            .map(SecretStore::from_sdk);
        let publisher = match (&sdk, &config.event_bus) {
            (Some(sdk), Some(bus)) => Some(Publisher::new(sdk, bus)),
            _ => None,
        };
        Ok(Self::with_secret_store(config, secrets).with_publisher(publisher))
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
        let database = config
            .database
            .clone()
            .map(|cfg| LazyStore::new(cfg, secrets, OnceCell::new()));
        Self::assemble(config, database, tokens)
    }

    fn assemble(config: Config, database: Option<LazyStore>, tokens: Option<Tokens>) -> Self {
        Self {
            config,
            database,
            tokens,
            publisher: None,
        }
    }

    /// Publishes lifecycle events with `publisher` (none: events are not
    /// recorded at all).
    pub fn with_publisher(mut self, publisher: Option<Publisher>) -> Self {
        self.publisher = publisher;
        self
    }

    /// An app around an existing store (tests).
    pub fn with_store(config: Config, store: Store, tokens: Option<Tokens>) -> Self {
        let database = config
            .database
            .clone()
            .map(|cfg| LazyStore::new(cfg, None, OnceCell::new_with(Some(store))));
        Self::assemble(config, database, tokens)
    }

    /// The store, connecting on first use. A failure (URI secret unreachable)
    /// is a 503 for this request, and the next request tries again.
    pub async fn store(&self) -> Result<&Store, ApiError> {
        self.invocation_arrived();
        self.connected_store().await
    }

    /// Tells the warm-up that an invocation is being served, before its
    /// handler runs: a request that uses the store opens the pooled
    /// connection with its own first command. An authenticated request asks
    /// for the store only once its token is checked, which on a cold start
    /// waits for the signing key; a warm-up that saw no request by then
    /// would queue a `ping` ahead of the request's first command.
    pub fn invocation_arrived(&self) {
        if let Some(db) = &self.database {
            db.wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the store is connected already; false while a cold start's
    /// secret fetch and MongoDB handshake are still under way.
    pub fn store_connected(&self) -> bool {
        self.database
            .as_ref()
            .is_some_and(|db| db.cell.initialized())
    }

    /// [`App::store`] without saying that a request wants it (the warm-up).
    async fn connected_store(&self) -> Result<&Store, ApiError> {
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
                Ok(Store::connect(&db.cfg, uri.expose())
                    .await?
                    .with_events(self.publisher.is_some())
                    .with_audit_retention(self.config.audit_retention))
            })
            .await
    }

    /// One purge run ([`Store::purge_due`]), its events published.
    pub async fn purge(&self) -> Result<crate::store::PurgeReport, ApiError> {
        let report = self.store().await?.purge_due(PURGE_BATCH).await?;
        self.publish_own_events(&report.events).await;
        tracing::info!(
            purged = report.purged,
            settled = report.settled,
            more = report.more,
            "purge run"
        );
        Ok(report)
    }

    /// Publishes what the outbox holds that is ready (the scheduled flush).
    /// Never fails the caller: what cannot be published now is retried by a
    /// later flush. Then it reads what is left, for the outbox's metrics.
    pub async fn flush_events(&self) {
        if let Some((store, publisher)) = self.event_outlet().await {
            report(crate::events::flush(store, publisher).await);
            match store.outbox_backlog().await {
                Ok(backlog) => {
                    Metric::OutboxPending.observe(backlog.pending as f64);
                    Metric::OutboxOldestPendingAge.observe(backlog.oldest_age.as_secs_f64());
                }
                Err(e) => e.log(),
            }
        }
    }

    /// Publishes the events of operations this request has just finished
    /// (one `PutEvents`, one update). Never fails the caller: an event not
    /// sent now stays in the outbox for the scheduled flush.
    pub async fn publish_own_events(&self, entries: &[crate::events::OutboxEntry]) {
        if entries.is_empty() {
            return;
        }
        if let Some((store, publisher)) = self.event_outlet().await {
            report(crate::events::publish_held(store, publisher, entries).await);
        }
    }

    /// The outbox's store and the publisher, when events are published at
    /// all and the store is reachable (its failure is logged).
    async fn event_outlet(&self) -> Option<(&Store, &Publisher)> {
        let publisher = self.publisher.as_ref()?;
        match self.store().await {
            Ok(store) => Some((store, publisher)),
            Err(e) => {
                e.log();
                None
            }
        }
    }

    fn store_wanted(&self) -> bool {
        self.database
            .as_ref()
            .is_some_and(|db| db.wanted.load(Ordering::Relaxed))
    }

    /// The tenant database's name, from configuration: names are checked
    /// against it before anything connects, so a malformed name is a 422
    /// whatever the state of the database or the secret store.
    pub fn tenant_db(&self) -> Result<&str, ApiError> {
        self.database
            .as_ref()
            .map(|db| db.cfg.tenant_db.as_str())
            .ok_or_else(|| ApiError::internal("this function has no database"))
    }

    pub fn tokens(&self) -> Result<&Tokens, ApiError> {
        self.tokens
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("signing key", "no token configuration"))
    }

    /// Starts, during init and in the background, the round trips the first
    /// request would otherwise wait for: the MongoDB handshake (after the URI
    /// secret, if any) and the signing-key fetch, side by side and overlapping
    /// the runtime's own start. A request that arrives first waits for the
    /// same work rather than repeating it; failures are logged and retried by
    /// requests. `indexes` are the ones the function ensures while it starts
    /// ([`Function::indexes_at_start`]).
    pub fn warm(&'static self, indexes: StartIndexes) {
        if self.database.is_some() {
            tokio::spawn(async move {
                // The first command opens the pooled connection, which the
                // request then reuses (one connection: `Store::connect`). A
                // ping is only for that: once an invocation has arrived, its
                // own command opens the connection instead; the ping is for
                // an environment initialised ahead of its first request.
                let connected = match self.connected_store().await {
                    Ok(store) => match indexes {
                        StartIndexes::All => store.ensure_indexes().await,
                        StartIndexes::Unique => store.ensure_unique_indexes().await,
                        StartIndexes::UniqueAndDeleted => {
                            match store.ensure_unique_indexes().await {
                                Ok(()) => store.ensure_deleted_indexes().await,
                                Err(e) => Err(e),
                            }
                        }
                        StartIndexes::None if self.store_wanted() => Ok(()),
                        StartIndexes::None => store.ping().await,
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = connected {
                    e.log();
                }
            });
        }
        if let Some(tokens) = &self.tokens {
            tokio::spawn(async move {
                if let Err(e) = tokens.key_provider().keys().await {
                    e.log();
                }
            });
        }
    }

    /// Builds the app for `function` from the environment, for the lifetime
    /// of the process (an execution environment), and starts warming it.
    pub async fn start(function: Function) -> Result<&'static Self, ConfigError> {
        let app: &'static Self = Box::leak(Box::new(Self::init(function).await?));
        app.warm(function.indexes_at_start());
        Ok(app)
    }
}
