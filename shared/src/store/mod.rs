//! The master database and the tenant collections: every MongoDB call lives here.
//!
//! Create, rename and delete are each a short sequence of idempotent steps whose
//! progress is recorded on the organization document (`state` plus `pending`).
//! A crash between two steps leaves the organization in a non-active state that
//! names the operation and carries what is needed to finish it; whoever meets it
//! next after its lease has run out (a retry, or any other request) rolls it
//! forward, or back where forward is impossible. See `docs/lifecycle.md`.
//!
//! Uniqueness is the server's job, never a read-then-write check here: unique
//! indexes on `names` (every name an organization holds, including the one a
//! rename is moving to), `name`, `collection_name` and the admin `email`.
//!
//! - `model`: the documents and the states an organization goes through.
//! - `lifecycle`: create, rename and delete, and settling what a crash left.
//! - `deleted`: soft-deleted organizations: their records, restore.
//! - `purge`: removing deleted organizations past their retention.
//! - `audit`: the audit trail of actions and login attempts.
//! - `listing`: every organization, live and deleted, for operators.
//! - `admins`: admins, their sessions (token versions) and credentials.
//! - `throttle`: login throttling and the per-source create limit.
//! - `outbox`: lifecycle events recorded with the operations' steps.
//! - `idempotency`: `Idempotency-Key` records.
//!
//! This file holds the connection, the collections and their indexes. What
//! lives elsewhere: validation (`domain`), hashing (`auth`), HTTP (`http`),
//! publishing events (`events`).

mod admins;
mod audit;
mod deleted;
mod idempotency;
mod lifecycle;
mod listing;
mod model;
pub mod outbox;
mod purge;
mod throttle;

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::OnceCell;

use crate::config::DatabaseConfig;
use crate::error::ApiError;

pub use audit::{
    Action, Actor, AuditContext, AuditCursor, AuditEntry, AuditPage, DEFAULT_AUDIT_RETENTION,
};
pub use deleted::Restored;
pub use idempotency::{Idempotent, IDEMPOTENCY_TTL};
pub use listing::{ListCursor, ListPage, ListQuery, ListedOrganization, ListedState};
pub use model::{
    holding_collection, AdminDoc, CredentialChange, DeletedAdmin, DeletedOrgDoc, DeletedState,
    Finished, NewOrganization, OrgDoc, OrgState, Pending, PurgeReport, RestoreRequest, Updated,
};
pub use outbox::{Backlog, OutboxEntry, PUBLISHED_TTL};
pub use throttle::{LoginKeys, LoginThrottle};

pub const ORGANIZATIONS: &str = "organizations";
pub const ADMINS: &str = "admins";
pub const LOGIN_ATTEMPTS: &str = "login_attempts";
pub const OUTBOX: &str = "outbox";
pub const IDEMPOTENCY: &str = "idempotency";
pub const DELETED_ORGANIZATIONS: &str = "deleted_organizations";
pub const AUDIT: &str = "audit";

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
const NAMESPACE_EXISTS: i32 = 48;

pub struct Store {
    client: Client,
    master: Database,
    tenant: Database,
    tenant_db: String,
    orgs: Collection<OrgDoc>,
    admins: Collection<AdminDoc>,
    attempts: Collection<Document>,
    outbox: Collection<OutboxEntry>,
    idempotency: Collection<Document>,
    deleted: Collection<DeletedOrgDoc>,
    audit: Collection<AuditEntry>,
    audit_retention: Duration,
    events_enabled: bool,
    lease: Duration,
    throttle: LoginThrottle,
    unique_indexes: OnceCell<()>,
    expiry_indexes: OnceCell<()>,
    deleted_indexes: OnceCell<()>,
    audit_indexes: OnceCell<()>,
}

/// Maps a driver error: the database being unreachable is a 503, anything else
/// unexpected is a 500 whose cause is logged, not returned.
pub fn db_error(err: mongodb::error::Error) -> ApiError {
    let unreachable = matches!(
        *err.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Authentication { .. }
    ) || err.contains_label("RetryableWriteError")
        || matches!(
            server_code(&err),
            Some(10107 | 13435 | 11600 | 11602 | 189 | 91)
        );
    if unreachable {
        ApiError::unavailable("database", err)
    } else {
        ApiError::internal(err)
    }
}

/// Every lifecycle step must survive a crash of the server as well as of
/// the function: acknowledged means journaled on a majority.
fn durable() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// `at` plus `after`, as stored times (expiries, holds, locks) are computed.
pub(crate) fn later(at: DateTime, after: Duration) -> DateTime {
    let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(at.timestamp_millis().saturating_add(millis))
}

impl Store {
    /// The start time at or before which an operation is past its lease
    /// (`OPERATION_LEASE_SECS`): presumed dead, for the next one to finish.
    fn lease_cutoff(&self) -> DateTime {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        DateTime::from_millis(DateTime::now().timestamp_millis().saturating_sub(lease))
    }

    /// Whether the operation recorded as `pending` (on an organization or a
    /// deleted organization's record) is past its lease; none recorded,
    /// nothing to wait for.
    fn past_lease(&self, pending: Option<&Pending>) -> bool {
        pending.is_none_or(|p| p.started_at <= self.lease_cutoff())
    }
}

fn server_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    server_code(err) == Some(DUPLICATE_KEY)
}

impl Store {
    /// Builds the client with settings for Lambda: one pooled connection,
    /// idle connections closed before the platform freezes them for long, and
    /// short selection and connect timeouts so an outage is a prompt 503. No
    /// I/O happens here beyond DNS for `mongodb+srv` URIs.
    ///
    /// One connection because an execution environment serves one request at
    /// a time, and because a command that finds the pool's connections busy
    /// opens another: at a cold start that is a whole second handshake (TCP,
    /// TLS, `hello`, authentication; see BENCHMARKS.md) to save the
    /// fraction of a millisecond the busy command had left. A `maxPoolSize`
    /// in the URI overrides it (the tests that play many environments at once
    /// do).
    pub async fn connect(cfg: &DatabaseConfig, uri: &str) -> Result<Self, ApiError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| ApiError::unavailable("database", e))?;
        options
            .app_name
            .get_or_insert_with(|| "org-service".to_owned());
        options.max_pool_size = Some(options.max_pool_size.unwrap_or(1));
        options.min_pool_size = Some(0);
        options.max_idle_time = Some(Duration::from_secs(60));
        options.server_selection_timeout = Some(cfg.timeout);
        options.connect_timeout = Some(cfg.timeout);
        let client =
            Client::with_options(options).map_err(|e| ApiError::unavailable("database", e))?;
        Ok(Self::from_client(client, cfg))
    }

    pub fn from_client(client: Client, cfg: &DatabaseConfig) -> Self {
        let durable = durable();
        let master = client.database_with_options(
            &cfg.master_db,
            DatabaseOptions::builder()
                .write_concern(durable.clone())
                .build(),
        );
        let tenant = client.database_with_options(
            &cfg.tenant_db,
            DatabaseOptions::builder().write_concern(durable).build(),
        );
        Self {
            orgs: master.collection(ORGANIZATIONS),
            admins: master.collection(ADMINS),
            attempts: master.collection(LOGIN_ATTEMPTS),
            outbox: master.collection(OUTBOX),
            idempotency: master.collection(IDEMPOTENCY),
            deleted: master.collection(DELETED_ORGANIZATIONS),
            audit: master.collection(AUDIT),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            events_enabled: false,
            throttle: LoginThrottle::default(),
            client,
            master,
            tenant,
            tenant_db: cfg.tenant_db.clone(),
            lease: cfg.operation_lease,
            unique_indexes: OnceCell::new(),
            expiry_indexes: OnceCell::new(),
            deleted_indexes: OnceCell::new(),
            audit_indexes: OnceCell::new(),
        }
    }

    /// Records lifecycle events in the outbox (when a bus is configured).
    pub fn with_events(mut self, enabled: bool) -> Self {
        self.events_enabled = enabled;
        self
    }

    /// How long audit entries are kept (`AUDIT_RETENTION_DAYS`).
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    pub fn with_login_throttle(mut self, throttle: LoginThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tenant_db(&self) -> &str {
        &self.tenant_db
    }

    /// One round trip that establishes a pooled connection (handshake, TLS,
    /// authentication), so the first request does not pay for it.
    pub async fn ping(&self) -> Result<(), ApiError> {
        self.master
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    /// Ensures every index, once per execution environment: the unique ones
    /// first ([`Store::ensure_unique_indexes`]), then those that expire old
    /// records and find pending events. The create function runs it during
    /// init (see `Function::indexes_at_start`); the login-throttle and
    /// idempotency paths before they write records that must expire.
    /// `createIndexes` is idempotent, so many environments doing this at once
    /// is harmless.
    pub async fn ensure_indexes(&self) -> Result<(), ApiError> {
        self.ensure_unique_indexes().await?;
        self.ensure_deleted_indexes().await?;
        self.ensure_audit_indexes().await?;
        self.expiry_indexes
            .get_or_try_init(|| async {
                let ttl = || {
                    index(
                        doc! { "expires_at": 1 },
                        "expires_at_ttl",
                        IndexKind::ExpiresAt,
                    )
                };
                self.attempts.create_index(ttl()).await.map_err(db_error)?;
                self.idempotency
                    .create_index(ttl())
                    .await
                    .map_err(db_error)?;
                let pending = index(
                    doc! { "published_at": 1, "available_at": 1 },
                    "pending",
                    IndexKind::Plain,
                );
                self.outbox
                    .create_indexes([ttl(), pending])
                    .await
                    .map_err(db_error)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Ensures the unique indexes that creates and renames rely on (one name
    /// per organization, one admin per email), once per execution
    /// environment: two `createIndexes`, started during init by the functions
    /// that claim names or emails and awaited just before such a claim.
    pub async fn ensure_unique_indexes(&self) -> Result<(), ApiError> {
        self.unique_indexes
            .get_or_try_init(|| async {
                self.orgs
                    .create_indexes([
                        index(doc! { "names": 1 }, "names_unique", IndexKind::Unique),
                        index(doc! { "name": 1 }, "name_unique", IndexKind::Unique),
                        index(
                            doc! { "collection_name": 1 },
                            "collection_name_unique",
                            IndexKind::Unique,
                        ),
                    ])
                    .await
                    .map_err(db_error)?;
                self.admins
                    .create_indexes([
                        index(doc! { "email": 1 }, "email_unique", IndexKind::Unique),
                        index(
                            doc! { "organization_id": 1 },
                            "organization_id",
                            IndexKind::Plain,
                        ),
                    ])
                    .await
                    .map_err(db_error)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

impl Store {
    /// Ensures the indexes of deleted organizations' records, once per
    /// execution environment: by former name and admin email (a restore's
    /// look-up), by state and purge time (a purge run's), by the operation
    /// that claimed one, and by name (the operator listing's order).
    /// What a restore writes through: the unique indexes its inserts claim
    /// names and emails by, and the deleted records' (it removes its record
    /// by `pending.op_id`).
    pub async fn ensure_restore_indexes(&self) -> Result<(), ApiError> {
        self.ensure_unique_indexes().await?;
        self.ensure_deleted_indexes().await
    }

    pub async fn ensure_deleted_indexes(&self) -> Result<(), ApiError> {
        self.deleted_indexes
            .get_or_try_init(|| async {
                self.deleted
                    .create_indexes([
                        index(
                            doc! { "name": 1, "admin.email": 1, "deleted_at": -1 },
                            "name_email",
                            IndexKind::Plain,
                        ),
                        index(
                            doc! { "state": 1, "purge_after": 1 },
                            "state_purge_after",
                            IndexKind::Plain,
                        ),
                        index(doc! { "pending.op_id": 1 }, "pending_op", IndexKind::Plain),
                        index(doc! { "name": 1, "_id": 1 }, "name_id", IndexKind::Plain),
                    ])
                    .await
                    .map_err(db_error)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

/// What an index does besides finding documents.
enum IndexKind {
    Plain,
    Unique,
    /// Deletes each document once its `expires_at` has passed (TTL).
    ExpiresAt,
}

fn index(keys: Document, name: &str, kind: IndexKind) -> IndexModel {
    let options = IndexOptions::builder().name(name.to_owned());
    let options = match kind {
        IndexKind::Plain => options.build(),
        IndexKind::Unique => options.unique(true).build(),
        IndexKind::ExpiresAt => options.expire_after(Duration::ZERO).build(),
    };
    IndexModel::builder().keys(keys).options(options).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_adds_the_duration_and_saturates() {
        let t = DateTime::from_millis(1_000);
        assert_eq!(
            later(t, Duration::from_millis(1_500)).timestamp_millis(),
            2_500
        );
        assert_eq!(later(t, Duration::MAX).timestamp_millis(), i64::MAX);
    }
}
