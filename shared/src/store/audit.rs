//! The audit trail: one entry per state-changing action and per login
//! attempt, in `audit`, kept `AUDIT_RETENTION_DAYS` (a TTL index).
//!
//! A lifecycle operation's entry is keyed by the operation's id and written
//! in the same step as its outbox entry, from the context the operation
//! recorded when it started (`pending.audit`): whoever finishes the
//! operation writes it, once. A credential change writes its entries in the
//! transaction that changes the admin. A login's entry (and a listing's) is
//! written before its answer: a process that dies first has answered nothing.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use serde::{Deserialize, Serialize};

use super::{db_error, is_duplicate_key, later, Store};
use crate::error::ApiError;
use crate::telemetry::{self, Metric};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "login.succeeded")]
    LoginSucceeded,
    #[serde(rename = "login.failed")]
    LoginFailed,
    #[serde(rename = "login.throttled")]
    LoginThrottled,
    #[serde(rename = "organization.created")]
    OrganizationCreated,
    #[serde(rename = "organization.renamed")]
    OrganizationRenamed,
    #[serde(rename = "admin.email_changed")]
    AdminEmailChanged,
    #[serde(rename = "admin.password_changed")]
    AdminPasswordChanged,
    #[serde(rename = "organization.deleted")]
    OrganizationDeleted,
    #[serde(rename = "organization.restored")]
    OrganizationRestored,
    #[serde(rename = "organization.purged")]
    OrganizationPurged,
    /// An operator listed the organizations (no organization's own).
    #[serde(rename = "organizations.listed")]
    OrganizationsListed,
}

impl Action {
    /// The entry's `outcome`: how the attempt ended (an operation recorded
    /// has succeeded).
    fn outcome(self) -> &'static str {
        match self {
            Action::LoginFailed => "failed",
            Action::LoginThrottled => "throttled",
            _ => "succeeded",
        }
    }

    /// Counts the outcome in its metric, where it has one: every outcome
    /// the audit trail records is counted where it is recorded, once.
    fn count(self) {
        let metric = match self {
            Action::LoginSucceeded => Metric::LoginSucceeded,
            Action::LoginFailed => Metric::LoginFailed,
            Action::LoginThrottled => Metric::LoginThrottled,
            Action::OrganizationCreated => Metric::OrganizationsCreated,
            Action::OrganizationRenamed => Metric::OrganizationsRenamed,
            Action::OrganizationDeleted => Metric::OrganizationsDeleted,
            Action::OrganizationRestored => Metric::OrganizationsRestored,
            Action::OrganizationPurged => Metric::OrganizationsPurged,
            Action::AdminEmailChanged
            | Action::AdminPasswordChanged
            | Action::OrganizationsListed => return,
        };
        telemetry::count(metric);
    }
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// An organization's admin (its id), over HTTP.
    Admin(String),
    /// Someone not (yet) known: a login or a sign-up, by the email it gave
    /// (an unknown one is recorded as given, never a password).
    Anonymous(String),
    /// A provisioning request, by its source (SQS queue or event source).
    Provisioning(String),
    /// An operator, by the IAM principal's ARN.
    Operator(String),
    /// The service itself (the scheduled purge).
    System(String),
}

/// Where a request came from: recorded with every entry it causes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContext {
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The gateway's request id (`requestContext.requestId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl AuditContext {
    pub fn system(what: &str) -> Self {
        Self {
            actor: Actor::System(what.to_owned()),
            source_ip: None,
            request_id: None,
        }
    }
}

/// A document of `audit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The operation's id for a lifecycle action (written once however
    /// often its step runs); a new id otherwise.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// None for a login attempt with an email no admin has.
    pub organization_id: Option<ObjectId>,
    pub at: DateTime,
    pub action: Action,
    #[serde(flatten)]
    pub context: AuditContext,
    /// `succeeded`, or why not (`failed`, `throttled`).
    pub outcome: String,
    pub expires_at: DateTime,
}

/// Where a page of entries ends: the last entry's time and id, opaque to
/// clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    at: DateTime,
    id: ObjectId,
}

impl AuditCursor {
    /// A version tag, then the time (16 hex digits) and the id (24).
    const PREFIX: &'static str = "a1";

    pub fn encode(&self) -> String {
        format!(
            "{}{:016x}{}",
            Self::PREFIX,
            self.at.timestamp_millis(),
            self.id.to_hex()
        )
    }

    /// A cursor this service issued; anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(Self::PREFIX)?;
        if rest.len() != 40 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (millis, id) = rest.split_at(16);
        Some(Self {
            at: DateTime::from_millis(i64::from_str_radix(millis, 16).ok()?),
            id: ObjectId::parse_str(id).ok()?,
        })
    }
}

/// One page of an organization's entries, newest first.
#[derive(Debug)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<AuditCursor>,
}

pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

impl Store {
    /// The entry of `action`, keyed `id` (an operation's id: written once).
    pub(super) fn audit_entry(
        &self,
        id: ObjectId,
        organization_id: Option<ObjectId>,
        action: Action,
        context: &AuditContext,
    ) -> AuditEntry {
        let at = DateTime::now();
        AuditEntry {
            id,
            organization_id,
            at,
            action,
            context: context.clone(),
            outcome: action.outcome().to_owned(),
            expires_at: later(at, self.audit_retention),
        }
    }

    /// Writes the entry of a lifecycle step, once however often the step
    /// runs. An operation that started before entries existed (no context)
    /// is recorded as the service's own.
    async fn record_audit(
        &self,
        op_id: ObjectId,
        organization_id: ObjectId,
        action: Action,
        context: Option<&AuditContext>,
    ) -> Result<(), ApiError> {
        let fallback = AuditContext::system("unrecorded");
        let entry = self.audit_entry(
            op_id,
            Some(organization_id),
            action,
            context.unwrap_or(&fallback),
        );
        match self.audit.insert_one(&entry).await {
            Ok(_) => {
                action.count();
                Ok(())
            }
            // A repeated step: its operation was recorded, and counted, once.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    /// The record of an operation's outcome, written by the step before its
    /// last: its event (when events are published) and its audit entry, both
    /// keyed by the operation's id, so a repeated step writes neither twice.
    /// The event, when this call wrote it (its request publishes it).
    pub(super) async fn record_outcome(
        &self,
        op_id: ObjectId,
        organization_id: ObjectId,
        (detail_type, detail): (&str, Document),
        action: Action,
        context: Option<&AuditContext>,
    ) -> Result<Option<super::OutboxEntry>, ApiError> {
        let event = self.record_event(op_id, detail_type, detail).await?;
        self.record_audit(op_id, organization_id, action, context)
            .await?;
        Ok(event)
    }

    /// Records what a request decided by itself (a login attempt, a
    /// listing). A failure to write it is logged, never the caller's error:
    /// the request has been decided, and its answer goes out.
    pub async fn audit_request(
        &self,
        organization_id: Option<ObjectId>,
        action: Action,
        context: &AuditContext,
    ) {
        action.count();
        let entry = self.audit_entry(ObjectId::new(), organization_id, action, context);
        if let Err(e) = self.audit.insert_one(&entry).await {
            tracing::error!(error = %e, action = ?action, "audit entry not written");
        }
    }

    /// Up to `limit` entries of `organization_id`, newest first, after
    /// `cursor`: served by the `organization_id, at, _id` index, so entries
    /// written meanwhile (newer than any cursor) never shift a page.
    pub async fn audit_page(
        &self,
        organization_id: ObjectId,
        limit: u32,
        cursor: Option<AuditCursor>,
    ) -> Result<AuditPage, ApiError> {
        self.ensure_audit_indexes().await?;
        let filter = audit_filter(organization_id, cursor);
        let mut found = self
            .audit
            .find(filter)
            .sort(AUDIT_ORDER.clone())
            .limit(i64::from(limit) + 1)
            .await
            .map_err(db_error)?;
        let mut entries = Vec::new();
        while found.advance().await.map_err(db_error)? {
            entries.push(found.deserialize_current().map_err(db_error)?);
        }
        let next = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries
                .last()
                .map(|e: &AuditEntry| AuditCursor { at: e.at, id: e.id })
        } else {
            None
        };
        Ok(AuditPage { entries, next })
    }

    /// The server's plan for a page query and what running it examined (for
    /// the test that shows no collection scan, and the benchmark).
    pub async fn explain_audit_page(
        &self,
        organization_id: ObjectId,
        limit: u32,
        cursor: Option<AuditCursor>,
    ) -> Result<Document, ApiError> {
        self.ensure_audit_indexes().await?;
        self.master
            .run_command(doc! {
                "explain": {
                    "find": super::AUDIT,
                    "filter": audit_filter(organization_id, cursor),
                    "sort": AUDIT_ORDER.clone(),
                    "limit": i64::from(limit) + 1,
                },
                "verbosity": "executionStats",
            })
            .await
            .map_err(db_error)
    }

    /// The audit indexes, once per execution environment: the page's, and
    /// the expiry (TTL).
    pub async fn ensure_audit_indexes(&self) -> Result<(), ApiError> {
        self.audit_indexes
            .get_or_try_init(|| async {
                self.audit
                    .create_indexes([
                        super::index(
                            doc! { "organization_id": 1, "at": -1, "_id": -1 },
                            "organization_newest_first",
                            super::IndexKind::Plain,
                        ),
                        super::index(
                            doc! { "expires_at": 1 },
                            "expires_at_ttl",
                            super::IndexKind::ExpiresAt,
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

static AUDIT_ORDER: std::sync::LazyLock<Document> =
    std::sync::LazyLock::new(|| doc! { "at": -1, "_id": -1 });

/// The entries of `organization_id` after `cursor`. The bound on `at` is
/// the index's range, so a page deep in the trail starts where the cursor
/// is rather than scanning from the newest entry; the `$or` only sorts out
/// the entries that share the cursor's time.
fn audit_filter(organization_id: ObjectId, cursor: Option<AuditCursor>) -> Document {
    match cursor {
        None => doc! { "organization_id": organization_id },
        Some(c) => doc! {
            "organization_id": organization_id,
            "at": { "$lte": c.at },
            "$or": [
                { "at": { "$lt": c.at } },
                { "_id": { "$lt": c.id } },
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let c = AuditCursor {
            at: DateTime::from_millis(1_700_000_000_123),
            id: ObjectId::new(),
        };
        assert_eq!(AuditCursor::parse(&c.encode()), Some(c));
        let good = c.encode();
        for bad in [
            "",
            "a1",
            "a1zz",
            &good[1..],
            &good[..good.len() - 1],
            &good.replace("a1", "b1"),
        ] {
            assert_eq!(AuditCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn actions_and_actors_are_stored_as_named() {
        let ctx = AuditContext {
            actor: Actor::Operator("arn:aws:iam::1:role/ops".into()),
            source_ip: Some("192.0.2.1".into()),
            request_id: None,
        };
        let doc = mongodb::bson::to_document(&ctx).unwrap();
        assert_eq!(
            doc.get_document("actor").unwrap().get_str("kind").unwrap(),
            "operator"
        );
        assert_eq!(
            mongodb::bson::to_bson(&Action::AdminEmailChanged).unwrap(),
            mongodb::bson::Bson::String("admin.email_changed".into())
        );
    }
}
