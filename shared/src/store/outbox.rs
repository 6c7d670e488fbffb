//! The outbox: each lifecycle operation's event, written once (keyed by the
//! operation's id) with the operation's own steps, held by the request that
//! wrote it, then claimed, released with a back-off, or marked published.
//! Publishing itself (EventBridge) is `crate::events`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use serde::{Deserialize, Serialize};

use super::{db_error, is_duplicate_key, later, Store};
use crate::error::ApiError;

pub const CREATED: &str = "OrganizationCreated";
pub const RENAMED: &str = "OrganizationRenamed";
pub const DELETED: &str = "OrganizationDeleted";
pub const RESTORED: &str = "OrganizationRestored";
pub const PURGED: &str = "OrganizationPurged";

/// How long an entry is left to whoever holds it (the request that wrote it,
/// or a flush that claimed it) before a flush may take it over.
pub const HOLD: Duration = Duration::from_secs(30);

/// What the outbox holds unpublished ([`Store::outbox_backlog`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    /// Since the oldest unpublished entry was written; zero when none is.
    pub oldest_age: Duration,
}

/// A document of `outbox`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The id of the operation that produced it; also the event's `event_id`.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub detail_type: String,
    pub detail: Document,
    pub created_at: DateTime,
    #[serde(default)]
    pub attempts: i32,
    /// Not claimable before this (a claim in flight, or a back-off).
    pub available_at: DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<DateTime>,
    /// Published entries are kept a while for inspection, then expire (TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
}

impl OutboxEntry {
    /// A new entry, held by its writer for [`HOLD`].
    pub fn new(op_id: ObjectId, detail_type: &str, mut detail: Document) -> Self {
        let now = DateTime::now();
        let held_until = later(now, HOLD);
        detail.insert("event_id", op_id.to_hex());
        detail.insert(
            "occurred_at",
            now.try_to_rfc3339_string().unwrap_or_default(),
        );
        Self {
            id: op_id,
            detail_type: detail_type.to_owned(),
            detail,
            created_at: now,
            attempts: 0,
            available_at: held_until,
            published_at: None,
            expires_at: None,
        }
    }

    /// The JSON text of `detail`, as EventBridge carries it.
    pub fn detail_json(&self) -> String {
        mongodb::bson::Bson::Document(self.detail.clone())
            .into_relaxed_extjson()
            .to_string()
    }
}

/// The detail of `OrganizationCreated`.
pub fn created(org_id: ObjectId, name: &str, collection: &str, admin_id: ObjectId) -> Document {
    doc! {
        "organization_id": org_id.to_hex(),
        "organization_name": name,
        "collection_name": collection,
        "admin_id": admin_id.to_hex(),
    }
}

/// The detail of `OrganizationRenamed`.
pub fn renamed(org_id: ObjectId, from: &str, to: &str, collection: &str) -> Document {
    doc! {
        "organization_id": org_id.to_hex(),
        "previous_name": from,
        "organization_name": to,
        "collection_name": collection,
    }
}

/// The detail of `OrganizationDeleted`: `purge_after` is when a soft
/// delete becomes final (null: removed at once).
pub fn deleted(org_id: ObjectId, name: &str, purge_after: Option<DateTime>) -> Document {
    let purge_after = purge_after
        .and_then(|t| t.try_to_rfc3339_string().ok())
        .map_or(mongodb::bson::Bson::Null, mongodb::bson::Bson::String);
    doc! {
        "organization_id": org_id.to_hex(),
        "organization_name": name,
        "purge_after": purge_after,
    }
}

/// The detail of `OrganizationRestored`.
pub fn restored(org_id: ObjectId, previous: &str, name: &str, collection: &str) -> Document {
    doc! {
        "organization_id": org_id.to_hex(),
        "previous_name": previous,
        "organization_name": name,
        "collection_name": collection,
    }
}

/// The detail of `OrganizationPurged`.
pub fn purged(org_id: ObjectId, name: &str) -> Document {
    doc! { "organization_id": org_id.to_hex(), "organization_name": name }
}

/// How long a published event stays in the outbox for inspection.
pub const PUBLISHED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Store {
    /// Writes the event of operation `op_id` once, however often the step
    /// that writes it is repeated; the entry when this call wrote it.
    pub(super) async fn record_event(
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
    pub async fn claim_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, ApiError> {
        let mut claimed = Vec::new();
        for _ in 0..limit {
            let now = DateTime::now();
            let hold = later(now, HOLD);
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

    /// Whether operation `op_id` has finished: no organization, and no
    /// deleted organization's record, carries it as pending any more (an
    /// operation rolled back removes its event first).
    pub async fn operation_finished(&self, op_id: ObjectId) -> Result<bool, ApiError> {
        let filter = doc! { "pending.op_id": op_id };
        let (orgs, deleted) = tokio::join!(
            self.orgs.count_documents(filter.clone()),
            self.deleted.count_documents(filter),
        );
        Ok(orgs.map_err(db_error)? == 0 && deleted.map_err(db_error)? == 0)
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

    /// How many entries wait to be published, and for how long the oldest
    /// of them has waited (the outbox's metrics, read after each scheduled
    /// flush). The `pending` index finds them; the oldest is sorted out of
    /// those, which a healthy outbox keeps to a handful.
    pub async fn outbox_backlog(&self) -> Result<Backlog, ApiError> {
        let unpublished = doc! { "published_at": null };
        let (pending, oldest) = tokio::join!(
            self.outbox.count_documents(unpublished.clone()),
            self.outbox
                .find_one(unpublished)
                .sort(doc! { "created_at": 1 }),
        );
        let oldest_age = match oldest.map_err(db_error)? {
            Some(entry) => {
                let waited =
                    DateTime::now().timestamp_millis() - entry.created_at.timestamp_millis();
                Duration::from_millis(u64::try_from(waited).unwrap_or(0))
            }
            None => Duration::ZERO,
        };
        Ok(Backlog {
            pending: pending.map_err(db_error)?,
            oldest_age,
        })
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
}
