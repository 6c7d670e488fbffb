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
//! What lives elsewhere: validation (`domain`), hashing (`auth`), HTTP (`http`).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::instrument;

use crate::config::DatabaseConfig;
use crate::domain::{Email, OrgName};
use crate::error::ApiError;
use crate::events::OutboxEntry;
use crate::failpoint;

pub const ORGANIZATIONS: &str = "organizations";
pub const ADMINS: &str = "admins";
pub const LOGIN_ATTEMPTS: &str = "login_attempts";
pub const OUTBOX: &str = "outbox";
pub const IDEMPOTENCY: &str = "idempotency";

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a published event stays in the outbox for inspection.
pub const PUBLISHED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a request with an `Idempotency-Key` should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Idempotent {
    /// First use of the key: run the request, then record its response.
    Run,
    /// The key was used for this same request: answer what it answered.
    Replay { status: u16, body: String },
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

/// How failed logins are throttled (README, "Security").
///
/// - Per email *and* source address: after `max_failures`, that pair is
///   locked, each further failure doubling the lock up to `max_lock`. A
///   stranger failing from elsewhere locks only their own pair, never the
///   real admin's.
/// - Per email across all sources, a ceiling against guessing spread over
///   many addresses: `per_email_max_failures` within `per_email_window` lock
///   the email for everyone for `per_email_lock`, and the count starts again
///   from zero. Attempts while locked are refused unread and count for
///   nothing, so keeping a victim locked out costs the full ceiling again
///   for every lock, never a few requests an hour.
#[derive(Clone, Copy, Debug)]
pub struct LoginThrottle {
    /// Failures tolerated before the first lock.
    pub max_failures: i64,
    /// The first lock; each further failure doubles it, up to `max_lock`.
    pub base_lock: Duration,
    pub max_lock: Duration,
    /// Failures are forgotten this long after the last one (a TTL index).
    pub window: Duration,
    /// Failures of one email from every source within `per_email_window`
    /// that lock it.
    pub per_email_max_failures: i64,
    pub per_email_window: Duration,
    pub per_email_lock: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            max_failures: 5,
            base_lock: Duration::from_secs(30),
            max_lock: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
            per_email_max_failures: 50,
            per_email_window: Duration::from_secs(15 * 60),
            per_email_lock: Duration::from_secs(15 * 60),
        }
    }
}

/// The throttling records of one login attempt: its email and source
/// address, and its email alone.
pub struct LoginKeys {
    pair: String,
    email: String,
}

impl LoginKeys {
    pub fn new(email: &Email, source: Option<&str>) -> Self {
        Self {
            pair: format!("login|{}|{}", email.as_str(), source.unwrap_or("unknown")),
            email: format!("login|{}", email.as_str()),
        }
    }
}

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
const NAMESPACE_EXISTS: i32 = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgState {
    Active,
    Creating,
    Renaming,
    Deleting,
}

impl OrgState {
    fn as_str(self) -> &'static str {
        match self {
            OrgState::Active => "active",
            OrgState::Creating => "creating",
            OrgState::Renaming => "renaming",
            OrgState::Deleting => "deleting",
        }
    }

    /// An admin may log in while the organization is active or being renamed
    /// (the token names the immutable id), not while it is half-made or going.
    pub fn allows_login(self) -> bool {
        matches!(self, OrgState::Active | OrgState::Renaming)
    }

    fn in_progress(self) -> &'static str {
        match self {
            OrgState::Active => "in use",
            OrgState::Creating => "being created",
            OrgState::Renaming => "being renamed",
            OrgState::Deleting => "being deleted",
        }
    }
}

/// What an unfinished operation needs in order to be finished by someone else.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// Identifies one attempt, so that only it can complete or undo itself.
    pub op_id: ObjectId,
    pub started_at: DateTime,
    /// Create: the admin to insert. The hash is removed once the org is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Rename: where from and where to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_name: Option<String>,
}

impl Pending {
    fn new(now: DateTime) -> Self {
        Self {
            op_id: ObjectId::new(),
            started_at: now,
            admin_email: None,
            password_hash: None,
            from_name: None,
            to_name: None,
        }
    }
}

/// A document of `organizations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrgDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    /// The names this organization holds: its own, plus the target of a rename
    /// in progress. A unique (multikey) index makes a claim atomic.
    pub names: Vec<String>,
    pub collection_name: String,
    pub admin_id: ObjectId,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub state: OrgState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The fingerprint of the provisioning request that created it; none for
    /// an organization created over HTTP. A repeated delivery is recognised
    /// by it, never by name and email alone (which anyone can register first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<String>,
}

/// A document of `admins`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub email: String,
    pub password_hash: String,
    pub organization_id: ObjectId,
    pub created_at: DateTime,
    /// Moves on with every change of email or password; a token carries the
    /// version it was issued at and is refused once they differ. Admins
    /// stored before versions existed have none: version 0.
    #[serde(default)]
    pub token_version: i64,
}

/// What a create asks for.
pub struct NewOrganization {
    pub name: OrgName,
    pub email: Email,
    pub password_hash: String,
    /// The provisioning request's fingerprint; none over HTTP.
    pub provisioned: Option<String>,
}

/// An organization as clients see it. Never holds a hash or internal state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub organization_id: String,
    pub organization_name: String,
    pub collection_name: String,
    pub admin_id: String,
    pub created_at: String,
}

impl From<&OrgDoc> for Organization {
    fn from(doc: &OrgDoc) -> Self {
        Self {
            organization_id: doc.id.to_hex(),
            organization_name: doc.name.clone(),
            collection_name: doc.collection_name.clone(),
            admin_id: doc.admin_id.to_hex(),
            created_at: doc
                .created_at
                .try_to_rfc3339_string()
                .unwrap_or_else(|_| doc.created_at.timestamp_millis().to_string()),
        }
    }
}

/// A change to the admin's credentials, applied with a rename or on its own.
#[derive(Default)]
pub struct CredentialChange {
    pub email: Option<Email>,
    pub password_hash: Option<String>,
    /// The token version of the session asking: the change applies only while
    /// it is still the admin's, and moves it on.
    pub token_version: i64,
}

impl CredentialChange {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.password_hash.is_none()
    }
}

/// What an update did: the rename (if any) and, when the admin's
/// credentials changed, their new token version.
#[derive(Debug)]
pub struct Updated {
    pub finished: Finished,
    pub token_version: Option<i64>,
}

/// What a create, rename or delete did: the organization (for a delete, as
/// it was) and the lifecycle event this request wrote and holds, for it to
/// publish before it answers ([`crate::events::publish_held`]).
#[derive(Debug)]
pub struct Finished {
    pub org: OrgDoc,
    pub event: Option<OutboxEntry>,
}

pub struct Store {
    client: Client,
    master: Database,
    tenant: Database,
    tenant_db: String,
    orgs: Collection<OrgDoc>,
    admins: Collection<AdminDoc>,
    attempts: Collection<Document>,
    outbox: Collection<crate::events::OutboxEntry>,
    idempotency: Collection<Document>,
    events_enabled: bool,
    lease: Duration,
    throttle: LoginThrottle,
    unique_indexes: OnceCell<()>,
    expiry_indexes: OnceCell<()>,
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

/// `at` plus `after`, as stored times (expiries, holds, locks) are computed.
pub(crate) fn later(at: DateTime, after: Duration) -> DateTime {
    let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(at.timestamp_millis().saturating_add(millis))
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

fn conflict_in_progress(doc: &OrgDoc) -> ApiError {
    ApiError::conflict(
        "operation_in_progress",
        format!(
            "organization '{}' is {}; retry shortly",
            doc.name,
            doc.state.in_progress()
        ),
    )
}

fn name_taken(name: &OrgName) -> ApiError {
    ApiError::conflict(
        "organization_exists",
        format!("organization name '{name}' is taken"),
    )
}

/// A token whose admin is no longer this organization's admin (it was
/// replaced) acts for nobody.
fn check_admin(org: &OrgDoc, admin_id: ObjectId) -> Result<(), ApiError> {
    if org.admin_id == admin_id {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the token does not belong to this organization's admin",
        ))
    }
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an admin with this email already exists")
}

/// One message for a token that no longer stands for a session: its admin
/// changed credentials, was replaced, or is gone.
const STALE_TOKEN: ApiError = ApiError::Unauthorized("invalid or expired token");

/// Matches an admin document at token version `version` (0 also matches a
/// document stored before versions existed).
fn at_token_version(version: i64) -> mongodb::bson::Bson {
    if version == 0 {
        mongodb::bson::bson!({ "$in": [0_i64, mongodb::bson::Bson::Null] })
    } else {
        mongodb::bson::Bson::Int64(version)
    }
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
    /// TLS, `hello`, authentication; 4-5 ms on the local server) to save the
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
        // Every lifecycle step must survive a crash of the server as well as
        // of the function: acknowledged means journaled on a majority.
        let durable = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build();
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
            events_enabled: false,
            throttle: LoginThrottle::default(),
            client,
            master,
            tenant,
            tenant_db: cfg.tenant_db.clone(),
            lease: cfg.operation_lease,
            unique_indexes: OnceCell::new(),
            expiry_indexes: OnceCell::new(),
        }
    }

    /// Records lifecycle events in the outbox (when a bus is configured).
    pub fn with_events(mut self, enabled: bool) -> Self {
        self.events_enabled = enabled;
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
        self.expiry_indexes
            .get_or_try_init(|| async {
                let ttl = || {
                    IndexModel::builder()
                        .keys(doc! { "expires_at": 1 })
                        .options(
                            IndexOptions::builder()
                                .name("expires_at_ttl".to_owned())
                                .expire_after(Duration::ZERO)
                                .build(),
                        )
                        .build()
                };
                self.attempts.create_index(ttl()).await.map_err(db_error)?;
                self.idempotency
                    .create_index(ttl())
                    .await
                    .map_err(db_error)?;
                self.outbox
                    .create_indexes([
                        ttl(),
                        IndexModel::builder()
                            .keys(doc! { "published_at": 1, "available_at": 1 })
                            .options(IndexOptions::builder().name("pending".to_owned()).build())
                            .build(),
                    ])
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
                let unique = |keys: Document, name: &str| {
                    IndexModel::builder()
                        .keys(keys)
                        .options(
                            IndexOptions::builder()
                                .unique(true)
                                .name(name.to_owned())
                                .build(),
                        )
                        .build()
                };
                self.orgs
                    .create_indexes([
                        unique(doc! { "names": 1 }, "names_unique"),
                        unique(doc! { "name": 1 }, "name_unique"),
                        unique(doc! { "collection_name": 1 }, "collection_name_unique"),
                    ])
                    .await
                    .map_err(db_error)?;
                self.admins
                    .create_indexes([
                        unique(doc! { "email": 1 }, "email_unique"),
                        IndexModel::builder()
                            .keys(doc! { "organization_id": 1 })
                            .options(
                                IndexOptions::builder()
                                    .name("organization_id".to_owned())
                                    .build(),
                            )
                            .build(),
                    ])
                    .await
                    .map_err(db_error)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn is_stale(&self, doc: &OrgDoc) -> bool {
        let Some(pending) = &doc.pending else {
            return true;
        };
        let age_ms = DateTime::now().timestamp_millis() - pending.started_at.timestamp_millis();
        age_ms >= self.lease.as_millis() as i64
    }

    /// Brings an organization met in any state to a settled one: active
    /// (`Some`) or gone (`None`). An operation still within its lease is left
    /// alone and reported as a 409; one past it is finished here.
    async fn settle(&self, doc: OrgDoc) -> Result<Option<OrgDoc>, ApiError> {
        if doc.state == OrgState::Active {
            return Ok(Some(doc));
        }
        if !self.is_stale(&doc) {
            return Err(conflict_in_progress(&doc));
        }
        tracing::warn!(
            organization_id = %doc.id,
            state = doc.state.as_str(),
            "finishing an operation abandoned past its lease"
        );
        match doc.state {
            OrgState::Active => Ok(Some(doc)),
            OrgState::Creating => match self.finish_create(&doc).await {
                Ok((done, _)) => Ok(Some(done)),
                Err(ApiError::Conflict {
                    code: "email_taken",
                    ..
                }) => Ok(None),
                Err(e) => Err(e),
            },
            // Events of operations finished here wait for the scheduled flush.
            OrgState::Renaming => self.finish_rename(&doc).await.map(|(d, _)| Some(d)),
            OrgState::Deleting => self.finish_delete(&doc).await.map(|_| None),
        }
    }

    async fn find_org(&self, filter: Document) -> Result<Option<OrgDoc>, ApiError> {
        self.orgs.find_one(filter).await.map_err(db_error)
    }

    async fn require_org(&self, filter: Document) -> Result<OrgDoc, ApiError> {
        self.find_org(filter)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))
    }

    /// The active organization called `name`.
    #[instrument(skip(self), fields(organization_name = %name))]
    pub async fn get_org(&self, name: &OrgName) -> Result<OrgDoc, ApiError> {
        let doc = self.require_org(doc! { "name": name.as_str() }).await?;
        self.settle(doc)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))
    }

    /// The active organization with this id.
    #[instrument(skip(self), fields(organization_id = %id))]
    pub async fn get_org_by_id(&self, id: ObjectId) -> Result<OrgDoc, ApiError> {
        let doc = self.require_org(doc! { "_id": id }).await?;
        self.settle(doc)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))
    }

    #[instrument(skip(self))]
    pub async fn find_admin(&self, email: &Email) -> Result<Option<AdminDoc>, ApiError> {
        self.admins
            .find_one(doc! { "email": email.as_str() })
            .await
            .map_err(db_error)
    }

    /// The organization doc as stored, in whatever state, for login checks.
    pub async fn find_org_by_id(&self, id: ObjectId) -> Result<Option<OrgDoc>, ApiError> {
        self.find_org(doc! { "_id": id }).await
    }

    /// Refuses a login while its email and source, or its email alone, is
    /// locked, with how long to wait; otherwise tells whether failures of
    /// the pair are on record (to clear on success).
    #[instrument(skip_all)]
    pub async fn check_login_allowed(&self, keys: &LoginKeys) -> Result<bool, ApiError> {
        use futures_util::TryStreamExt;
        let records: Vec<Document> = self
            .attempts
            .find(doc! { "_id": { "$in": [&keys.pair, &keys.email] } })
            .await
            .map_err(db_error)?
            .try_collect()
            .await
            .map_err(db_error)?;
        let now = DateTime::now().timestamp_millis();
        let wait_ms = records
            .iter()
            .filter_map(|r| r.get_datetime("locked_until").ok())
            .map(|until| until.timestamp_millis() - now)
            .max()
            .unwrap_or(0);
        if wait_ms > 0 {
            return Err(ApiError::TooManyRequests {
                reason: "too many failed attempts",
                retry_after: Duration::from_millis(wait_ms as u64).max(Duration::from_secs(1)),
            });
        }
        Ok(records
            .iter()
            .any(|r| r.get_str("_id").ok() == Some(keys.pair.as_str())))
    }

    /// Counts a failed login against its pair and its email, locking either
    /// once its failures pass the policy's threshold.
    #[instrument(skip_all)]
    pub async fn record_login_failure(&self, keys: &LoginKeys) -> Result<(), ApiError> {
        self.ensure_indexes().await?;
        let now = DateTime::now();
        let expires = later(now, self.throttle.window);
        let record = self
            .attempts
            .find_one_and_update(
                doc! { "_id": &keys.pair },
                doc! { "$inc": { "failures": 1_i64 }, "$set": { "expires_at": expires } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        let failures = record
            .as_ref()
            .and_then(|r| r.get_i64("failures").ok())
            .unwrap_or(1);
        let over = failures - self.throttle.max_failures;
        if over >= 0 {
            let doublings = over.min(20) as u32;
            let lock = self
                .throttle
                .base_lock
                .saturating_mul(1_u32 << doublings)
                .min(self.throttle.max_lock);
            let until = later(now, lock);
            let expires = later(until, self.throttle.window);
            self.attempts
                .update_one(
                    doc! { "_id": &keys.pair },
                    doc! { "$set": { "locked_until": until, "expires_at": expires } },
                )
                .await
                .map_err(db_error)?;
            tracing::warn!(
                failures,
                lock_secs = lock.as_secs(),
                "login locked after repeated failures"
            );
        }
        self.record_email_failure(&keys.email, now).await
    }

    /// The per-email ceiling: failures counted in a fixed window that is
    /// judged by its recorded end (not by when the TTL monitor deletes it),
    /// and a lock that starts the count again from zero.
    async fn record_email_failure(&self, key: &str, now: DateTime) -> Result<(), ApiError> {
        let window_ends = later(now, self.throttle.per_email_window);
        let counted = self
            .attempts
            .find_one_and_update(
                doc! { "_id": key, "window_ends": { "$gt": now } },
                doc! { "$inc": { "failures": 1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        let failures = match counted {
            Some(record) => record.get_i64("failures").unwrap_or(1),
            None => {
                // No window open: this failure opens one. Two failures racing
                // here may count as one; the ceiling is a bound, not a tally.
                self.attempts
                    .update_one(
                        doc! { "_id": key },
                        doc! { "$set": {
                            "failures": 1_i64,
                            "window_ends": window_ends,
                            "expires_at": window_ends,
                        } },
                    )
                    .upsert(true)
                    .await
                    .map_err(db_error)?;
                1
            }
        };
        if failures >= self.throttle.per_email_max_failures {
            let until = later(now, self.throttle.per_email_lock);
            self.attempts
                .update_one(
                    doc! { "_id": key },
                    doc! { "$set": {
                        "locked_until": until,
                        "failures": 0_i64,
                        "window_ends": until,
                        "expires_at": later(until, self.throttle.per_email_window),
                    } },
                )
                .await
                .map_err(db_error)?;
            tracing::warn!(
                failures,
                lock_secs = self.throttle.per_email_lock.as_secs(),
                "login locked for this email from every source"
            );
        }
        Ok(())
    }

    /// Forgets the failures of the pair after a successful login (the
    /// email's own count stays: it measures guessing from everywhere).
    pub async fn clear_login_failures(&self, keys: &LoginKeys) -> Result<(), ApiError> {
        self.attempts
            .delete_one(doc! { "_id": &keys.pair })
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Counts a create from `source` in the current hour, refusing it past
    /// `limit` with how long until the next hour. The records share the
    /// login throttle's collection and expiry.
    #[instrument(skip_all)]
    pub async fn count_create(&self, source: Option<&str>, limit: u64) -> Result<(), ApiError> {
        const HOUR_MS: i64 = 3_600_000;
        self.ensure_indexes().await?;
        let now = DateTime::now().timestamp_millis();
        let hour = now.div_euclid(HOUR_MS);
        let hour_ends = DateTime::from_millis((hour + 1) * HOUR_MS);
        let key = format!("create|{}|{hour}", source.unwrap_or("unknown"));
        let record = self
            .attempts
            .find_one_and_update(
                doc! { "_id": &key },
                doc! { "$inc": { "count": 1_i64 }, "$setOnInsert": { "expires_at": hour_ends } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        let count = record
            .as_ref()
            .and_then(|r| r.get_i64("count").ok())
            .unwrap_or(1);
        if count > i64::try_from(limit).unwrap_or(i64::MAX) {
            return Err(ApiError::TooManyRequests {
                reason: "too many organizations created from this address",
                retry_after: Duration::from_millis(
                    (hour_ends.timestamp_millis() - now).max(0) as u64
                ),
            });
        }
        Ok(())
    }

    /// The admin a token names, if the token still stands for a session: the
    /// admin exists, belongs to `org_id`, and is at the token's version.
    #[instrument(skip(self), fields(organization_id = %org_id))]
    pub async fn session_admin(
        &self,
        admin_id: ObjectId,
        org_id: ObjectId,
        token_version: i64,
    ) -> Result<AdminDoc, ApiError> {
        self.admins
            .find_one(doc! { "_id": admin_id })
            .await
            .map_err(db_error)?
            .filter(|a| a.organization_id == org_id && a.token_version == token_version)
            .ok_or(STALE_TOKEN)
    }

    /// Whether admin `admin_id` is gone along with organization `org_id`, or
    /// while a delete of it is under way: what a token of that admin may
    /// still ask is that delete (to finish it, or to learn it is done).
    pub async fn deleted_with_its_admin(
        &self,
        org_id: ObjectId,
        admin_id: ObjectId,
    ) -> Result<bool, ApiError> {
        let admin = self
            .admins
            .find_one(doc! { "_id": admin_id })
            .await
            .map_err(db_error)?;
        if admin.is_some() {
            return Ok(false);
        }
        Ok(match self.find_org(doc! { "_id": org_id }).await? {
            None => true,
            Some(org) => org.state == OrgState::Deleting && org.admin_id == admin_id,
        })
    }

    /// Replaces a hash that just verified by `new_hash` (same password, the
    /// service's current cost), unless the password changed in between.
    pub async fn rehash_password(
        &self,
        admin_id: ObjectId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), ApiError> {
        self.admins
            .update_one(
                doc! { "_id": admin_id, "password_hash": old_hash },
                doc! { "$set": { "password_hash": new_hash } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Creates an organization, its admin and its tenant collection, unless
    /// `max_organizations` exist already. The cap counts every organization
    /// in any state from the collection's metadata (no scan); creates racing
    /// at the cap may pass it by as many as run at once.
    #[instrument(skip(self, new), fields(organization_name = %new.name))]
    pub async fn create_org(
        &self,
        new: NewOrganization,
        max_organizations: Option<u64>,
    ) -> Result<Finished, ApiError> {
        let NewOrganization {
            name,
            email,
            password_hash,
            provisioned,
        } = new;
        let name = &name;
        if let Some(max) = max_organizations {
            let existing = self
                .orgs
                .estimated_document_count()
                .await
                .map_err(db_error)?;
            if existing >= max {
                return Err(ApiError::conflict(
                    "organization_limit_reached",
                    format!("this service holds its maximum of {max} organizations"),
                ));
            }
        }
        self.ensure_unique_indexes().await?;
        let now = DateTime::now();
        let mut pending = Pending::new(now);
        pending.admin_email = Some(email.as_str().to_owned());
        pending.password_hash = Some(password_hash);
        let org = OrgDoc {
            id: ObjectId::new(),
            name: name.as_str().to_owned(),
            names: vec![name.as_str().to_owned()],
            collection_name: name.collection_name(),
            admin_id: ObjectId::new(),
            created_at: now,
            updated_at: now,
            state: OrgState::Creating,
            pending: Some(pending),
            provisioned,
        };
        // The second attempt covers a holder of the name that turned out to be
        // an abandoned operation, finished (and gone) by `settle`.
        for _ in 0..2 {
            match self.orgs.insert_one(&org).await {
                Ok(_) => {
                    failpoint::hit("create:after_org_insert");
                    let (org, event) = self.finish_create(&org).await?;
                    return Ok(Finished { org, event });
                }
                Err(e) if is_duplicate_key(&e) => {
                    let holder = self
                        .find_org(doc! { "$or": [
                            { "names": name.as_str() },
                            { "collection_name": name.collection_name() },
                        ] })
                        .await?;
                    if let Some(holder) = holder {
                        // A create abandoned by an earlier attempt of this same
                        // request (same name, same admin, same origin: over
                        // HTTP, or the same provisioning request) is finished
                        // and answered as this request's own.
                        let own_retry = holder.state == OrgState::Creating
                            && holder.provisioned == org.provisioned
                            && holder
                                .pending
                                .as_ref()
                                .and_then(|p| p.admin_email.as_deref())
                                == Some(email.as_str());
                        match self.settle(holder).await? {
                            Some(done) if own_retry => {
                                return Ok(Finished {
                                    org: done,
                                    event: None,
                                })
                            }
                            Some(_) => return Err(name_taken(name)),
                            None => {}
                        }
                    }
                }
                Err(e) => return Err(db_error(e)),
            }
        }
        Err(name_taken(name))
    }

    /// Steps 2-4 of create, each idempotent: insert the admin, create the
    /// collection, mark active. If the email turns out to be taken, the
    /// organization is rolled back and the caller gets a 409.
    async fn finish_create(&self, org: &OrgDoc) -> Result<(OrgDoc, Option<OutboxEntry>), ApiError> {
        let pending = org
            .pending
            .as_ref()
            .ok_or_else(|| ApiError::internal("creating organization without pending data"))?;
        let (Some(email), Some(hash)) = (&pending.admin_email, &pending.password_hash) else {
            return Err(ApiError::internal(
                "creating organization without its admin",
            ));
        };
        let admin = AdminDoc {
            id: org.admin_id,
            email: email.clone(),
            password_hash: hash.clone(),
            organization_id: org.id,
            created_at: org.created_at,
            token_version: 0,
        };
        match self.admins.insert_one(&admin).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                let ours = self
                    .admins
                    .find_one(doc! { "_id": org.admin_id })
                    .await
                    .map_err(db_error)?;
                if ours.is_none() {
                    self.roll_back_create(org).await?;
                    return Err(email_taken());
                }
            }
            Err(e) => return Err(db_error(e)),
        }
        failpoint::hit("create:after_admin_insert");

        self.create_tenant_collection(&org.collection_name).await?;
        let event = self
            .record_event(
                pending.op_id,
                crate::events::CREATED,
                crate::events::created(org.id, &org.name, &org.collection_name, org.admin_id),
            )
            .await?;
        failpoint::hit("create:after_collection");

        let activated = self
            .orgs
            .find_one_and_update(
                doc! { "_id": org.id, "state": OrgState::Creating.as_str() },
                doc! {
                    "$set": { "state": OrgState::Active.as_str(), "updated_at": DateTime::now() },
                    "$unset": { "pending": "" },
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        match activated {
            Some(doc) => Ok((doc, event)),
            // Someone else finished it first: report what is there now.
            None => self
                .find_org(doc! { "_id": org.id })
                .await?
                .filter(|d| d.state == OrgState::Active)
                .map(|d| (d, event))
                .ok_or_else(|| conflict_in_progress(org)),
        }
    }

    async fn roll_back_create(&self, org: &OrgDoc) -> Result<(), ApiError> {
        if let Some(p) = &org.pending {
            self.outbox
                .delete_one(doc! { "_id": p.op_id })
                .await
                .map_err(db_error)?;
        }
        self.admins
            .delete_one(doc! { "_id": org.admin_id })
            .await
            .map_err(db_error)?;
        self.drop_tenant_collection(&org.collection_name).await?;
        self.orgs
            .delete_one(doc! { "_id": org.id, "state": OrgState::Creating.as_str() })
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn create_tenant_collection(&self, name: &str) -> Result<(), ApiError> {
        match self.tenant.create_collection(name).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn drop_tenant_collection(&self, name: &str) -> Result<(), ApiError> {
        match self.tenant.collection::<Document>(name).drop().await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Renames the organization `org_id` to `new_name` and/or changes its
    /// admin's credentials.
    #[instrument(skip(self, credentials), fields(organization_id = %org_id, new_name = %new_name))]
    pub async fn update_org(
        &self,
        org_id: ObjectId,
        admin_id: ObjectId,
        new_name: &OrgName,
        credentials: CredentialChange,
    ) -> Result<Updated, ApiError> {
        let org = self.get_org_by_id(org_id).await?;
        check_admin(&org, admin_id)?;
        // The read above needs no index; what follows claims a name or an
        // email, which only the unique indexes keep single.
        self.ensure_unique_indexes().await?;
        if org.name == new_name.as_str() {
            let token_version = self.change_credentials(&org, &credentials).await?;
            return Ok(Updated {
                finished: Finished { org, event: None },
                token_version,
            });
        }

        // Claim the new name and record the rename in one atomic update.
        let now = DateTime::now();
        let mut pending = Pending::new(now);
        pending.from_name = Some(org.name.clone());
        pending.to_name = Some(new_name.as_str().to_owned());
        let op_id = pending.op_id;
        let pending_doc = mongodb::bson::to_document(&pending).map_err(ApiError::internal)?;
        let claimed = self
            .orgs
            .find_one_and_update(
                doc! { "_id": org.id, "state": OrgState::Active.as_str(), "name": &org.name },
                doc! { "$set": {
                    "state": OrgState::Renaming.as_str(),
                    "names": [&org.name, new_name.as_str()],
                    "pending": pending_doc,
                    "updated_at": now,
                } },
            )
            .return_document(ReturnDocument::After)
            .await;
        let claimed = match claimed {
            Ok(Some(doc)) => doc,
            Ok(None) => {
                let current = self.require_org(doc! { "_id": org.id }).await?;
                return Err(conflict_in_progress(&current));
            }
            Err(e) if is_duplicate_key(&e) => return Err(name_taken(new_name)),
            Err(e) => return Err(db_error(e)),
        };
        failpoint::hit("rename:after_claim");

        let token_version = match self.change_credentials(&claimed, &credentials).await {
            Ok(version) => version,
            Err(e) => {
                // Give the new name back; the rename never started moving data.
                self.orgs
                    .update_one(
                        doc! { "_id": org.id, "pending.op_id": op_id },
                        doc! {
                            "$set": {
                                "state": OrgState::Active.as_str(),
                                "names": [&org.name],
                                "updated_at": org.updated_at,
                            },
                            "$unset": { "pending": "" },
                        },
                    )
                    .await
                    .map_err(db_error)?;
                return Err(e);
            }
        };
        failpoint::hit("rename:after_credentials");
        let (org, event) = self.finish_rename(&claimed).await?;
        Ok(Updated {
            finished: Finished { org, event },
            token_version,
        })
    }

    /// Applies `change` while the admin is still at the asking session's
    /// token version, moving the version on; the new version, or none when
    /// nothing changed. A session whose version has moved on meanwhile (a
    /// concurrent change through another token) gets a 401.
    async fn change_credentials(
        &self,
        org: &OrgDoc,
        change: &CredentialChange,
    ) -> Result<Option<i64>, ApiError> {
        if change.is_empty() {
            return Ok(None);
        }
        let mut set = Document::new();
        if let Some(email) = &change.email {
            set.insert("email", email.as_str());
        }
        if let Some(hash) = &change.password_hash {
            set.insert("password_hash", hash.as_str());
        }
        let changed = self
            .admins
            .find_one_and_update(
                doc! {
                    "_id": org.admin_id,
                    "organization_id": org.id,
                    "token_version": at_token_version(change.token_version),
                },
                doc! { "$set": set, "$inc": { "token_version": 1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .await;
        match changed {
            Ok(Some(admin)) => Ok(Some(admin.token_version)),
            Ok(None) => Err(STALE_TOKEN),
            Err(e) if is_duplicate_key(&e) => Err(email_taken()),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Steps 2-3 of rename: move the collection with the server's
    /// `renameCollection` (a metadata change on mongod; indexes come along),
    /// then make the new name the organization's only name.
    async fn finish_rename(&self, org: &OrgDoc) -> Result<(OrgDoc, Option<OutboxEntry>), ApiError> {
        let pending = org
            .pending
            .as_ref()
            .ok_or_else(|| ApiError::internal("renaming organization without pending data"))?;
        let (Some(from), Some(to)) = (&pending.from_name, &pending.to_name) else {
            return Err(ApiError::internal("renaming organization without names"));
        };
        let from_ns = format!(
            "{}.{}",
            self.tenant_db,
            OrgName::from_stored(from.clone()).collection_name()
        );
        let to_collection = OrgName::from_stored(to.clone()).collection_name();
        let to_ns = format!("{}.{}", self.tenant_db, to_collection);
        let renamed = self
            .client
            .database("admin")
            .run_command(doc! { "renameCollection": &from_ns, "to": &to_ns, "dropTarget": false })
            .await;
        match renamed {
            Ok(_) => {}
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => {
                // Already moved by an earlier attempt, if the target is there.
                if !self.tenant_collection_exists(&to_collection).await? {
                    tracing::error!(organization_id = %org.id, "tenant collection missing during rename; recreating it empty");
                    self.create_tenant_collection(&to_collection).await?;
                }
            }
            Err(e) => return Err(db_error(e)),
        }
        let event = self
            .record_event(
                pending.op_id,
                crate::events::RENAMED,
                crate::events::renamed(org.id, from, to, &to_collection),
            )
            .await?;
        failpoint::hit("rename:after_collection_rename");

        let done = self
            .orgs
            .find_one_and_update(
                doc! { "_id": org.id, "state": OrgState::Renaming.as_str(), "pending.op_id": pending.op_id },
                doc! {
                    "$set": {
                        "state": OrgState::Active.as_str(),
                        "name": to,
                        "names": [to],
                        "collection_name": &to_collection,
                        "updated_at": DateTime::now(),
                    },
                    "$unset": { "pending": "" },
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        match done {
            Some(doc) => Ok((doc, event)),
            None => self
                .find_org(doc! { "_id": org.id })
                .await?
                .filter(|d| d.state == OrgState::Active && &d.name == to)
                .map(|d| (d, event))
                .ok_or_else(|| conflict_in_progress(org)),
        }
    }

    async fn tenant_collection_exists(&self, name: &str) -> Result<bool, ApiError> {
        let names = self
            .tenant
            .list_collection_names()
            .filter(doc! { "name": name })
            .await
            .map_err(db_error)?;
        Ok(!names.is_empty())
    }

    /// Deletes the organization called `name`, which must be `org_id`.
    #[instrument(skip(self), fields(organization_id = %org_id, organization_name = %name))]
    pub async fn delete_org(
        &self,
        org_id: ObjectId,
        admin_id: ObjectId,
        name: &OrgName,
    ) -> Result<Finished, ApiError> {
        // No unique index is needed here: a delete claims nothing.
        let org = self.require_org(doc! { "name": name.as_str() }).await?;
        if org.id != org_id {
            return Err(ApiError::Forbidden(
                "the token does not belong to this organization",
            ));
        }
        check_admin(&org, admin_id)?;
        // A delete abandoned by an earlier attempt is finished and answered
        // as this request's own; any other operation in progress is a 409.
        if org.state == OrgState::Deleting && self.is_stale(&org) {
            let event = self.finish_delete(&org).await?;
            return Ok(Finished { org, event });
        }
        let org = self
            .settle(org)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))?;
        failpoint::hit("delete:before_mark");
        let pending = Pending::new(DateTime::now());
        let pending_doc = mongodb::bson::to_document(&pending).map_err(ApiError::internal)?;
        let marked = self
            .orgs
            .find_one_and_update(
                // Still under the name the request gave: a rename that won
                // the race in between makes this delete miss (a 404 or 409
                // below), not delete the organization under its new name.
                doc! { "_id": org.id, "state": OrgState::Active.as_str(), "name": &org.name },
                doc! { "$set": {
                    "state": OrgState::Deleting.as_str(),
                    "pending": pending_doc,
                    "updated_at": DateTime::now(),
                } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        let Some(marked) = marked else {
            let current = self.require_org(doc! { "_id": org.id }).await?;
            if current.state == OrgState::Active && current.name != org.name {
                return Err(ApiError::NotFound("organization not found".into()));
            }
            return Err(conflict_in_progress(&current));
        };
        failpoint::hit("delete:after_mark");
        let event = self.finish_delete(&marked).await?;
        Ok(Finished { org, event })
    }

    /// Steps 2-4 of delete: admins first (so nobody can log in to a
    /// half-deleted organization), then the collection, then the record.
    async fn finish_delete(&self, org: &OrgDoc) -> Result<Option<OutboxEntry>, ApiError> {
        let event = match &org.pending {
            Some(p) => {
                self.record_event(
                    p.op_id,
                    crate::events::DELETED,
                    crate::events::deleted(org.id, &org.name),
                )
                .await?
            }
            None => None,
        };
        self.admins
            .delete_many(doc! { "organization_id": org.id })
            .await
            .map_err(db_error)?;
        failpoint::hit("delete:after_admins");
        self.drop_tenant_collection(&org.collection_name).await?;
        failpoint::hit("delete:after_drop");
        self.orgs
            .delete_one(doc! { "_id": org.id, "state": OrgState::Deleting.as_str() })
            .await
            .map_err(db_error)?;
        Ok(event)
    }

    // ------------------------------------------------------------ outbox

    /// Writes the event of operation `op_id` once, however often the step
    /// that writes it is repeated; the entry when this call wrote it.
    async fn record_event(
        &self,
        op_id: ObjectId,
        detail_type: &str,
        detail: Document,
    ) -> Result<Option<OutboxEntry>, ApiError> {
        if !self.events_enabled {
            return Ok(None);
        }
        let entry = OutboxEntry::new(op_id, detail_type, detail);
        match self.outbox.insert_one(&entry).await {
            // This call wrote it, so this request holds it.
            Ok(_) => Ok(Some(entry)),
            Err(e) if is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Claims up to `limit` unpublished entries that are due, so that two
    /// flushes at once do not send the same entry.
    pub async fn claim_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::events::OutboxEntry>, ApiError> {
        let mut claimed = Vec::new();
        for _ in 0..limit {
            let now = DateTime::now();
            let hold = later(now, crate::events::HOLD);
            let entry = self
                .outbox
                .find_one_and_update(
                    doc! { "published_at": null, "available_at": { "$lte": now } },
                    doc! { "$set": { "available_at": hold } },
                )
                .sort(doc! { "available_at": 1 })
                .await
                .map_err(db_error)?;
            match entry {
                Some(e) => claimed.push(e),
                None => break,
            }
        }
        Ok(claimed)
    }

    /// Whether operation `op_id` has finished: no organization carries it as
    /// pending any more (an operation rolled back removes its event first).
    pub async fn operation_finished(&self, op_id: ObjectId) -> Result<bool, ApiError> {
        let pending = self
            .orgs
            .count_documents(doc! { "pending.op_id": op_id })
            .await
            .map_err(db_error)?;
        Ok(pending == 0)
    }

    /// Marks the entries `ids` published, in one update.
    pub async fn mark_published(&self, ids: &[ObjectId]) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = DateTime::now();
        let expires = later(now, PUBLISHED_TTL);
        self.outbox
            .update_many(
                doc! { "_id": { "$in": ids } },
                doc! { "$set": { "published_at": now, "expires_at": expires } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Makes a claimed entry available again after `delay`; `failed` counts
    /// a failed attempt (for the back-off).
    pub async fn release_outbox(
        &self,
        id: ObjectId,
        delay: Duration,
        failed: bool,
    ) -> Result<(), ApiError> {
        let at = later(DateTime::now(), delay);
        let inc = if failed { 1 } else { 0 };
        self.outbox
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "available_at": at }, "$inc": { "attempts": inc } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    // ------------------------------------------------------- idempotency

    /// Starts (or replays) the request identified by `key` whose content
    /// fingerprint is `fingerprint`.
    pub async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Idempotent, ApiError> {
        self.ensure_indexes().await?;
        let now = DateTime::now();
        let expires = later(now, IDEMPOTENCY_TTL);
        let fresh = doc! {
            "_id": key, "fingerprint": fingerprint, "state": "running",
            "started_at": now, "expires_at": expires,
        };
        match self.idempotency.insert_one(fresh).await {
            Ok(_) => return Ok(Idempotent::Run),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(db_error(e)),
        }
        let Some(record) = self
            .idempotency
            .find_one(doc! { "_id": key })
            .await
            .map_err(db_error)?
        else {
            // Expired between the two calls: as good as new next time.
            return Ok(Idempotent::InProgress);
        };
        if record.get_str("fingerprint").ok() != Some(fingerprint) {
            return Ok(Idempotent::Mismatch);
        }
        if record.get_str("state").ok() == Some("done") {
            let status = record.get_i32("status").unwrap_or(500) as u16;
            let body = record.get_str("body").unwrap_or("{}").to_owned();
            return Ok(Idempotent::Replay { status, body });
        }
        // Running: take it over if its runner has been silent past the lease.
        let started = record
            .get_datetime("started_at")
            .map(|d| d.timestamp_millis())
            .unwrap_or(0);
        if now.timestamp_millis() - started >= self.lease.as_millis() as i64 {
            let taken = self
                .idempotency
                .update_one(
                    doc! { "_id": key, "state": "running", "started_at": DateTime::from_millis(started) },
                    doc! { "$set": { "started_at": now } },
                )
                .await
                .map_err(db_error)?;
            if taken.modified_count == 1 {
                return Ok(Idempotent::Run);
            }
        }
        Ok(Idempotent::InProgress)
    }

    /// Records the response of the request `key`, for replays.
    pub async fn idempotency_finish(
        &self,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), ApiError> {
        self.idempotency
            .update_one(
                doc! { "_id": key },
                doc! { "$set": { "state": "done", "status": i32::from(status), "body": body } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Forgets `key` after a failure worth retrying (5xx), so a retry runs.
    pub async fn idempotency_abandon(&self, key: &str) -> Result<(), ApiError> {
        self.idempotency
            .delete_one(doc! { "_id": key, "state": "running" })
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The organization whose admin has `email`, in any state.
    pub async fn org_of_admin(&self, email: &Email) -> Result<Option<OrgDoc>, ApiError> {
        match self.find_admin(email).await? {
            Some(admin) => self.find_org_by_id(admin.organization_id).await,
            None => Ok(None),
        }
    }
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
