//! The purge: deleted organizations past `purge_after` removed for good, a
//! bounded batch per run, after settling what interrupted deletes, restores
//! and purges left. Steps as in `docs/lifecycle.md`: claim the record
//! (compare-and-set `deleted → purging`), record the event and audit entry,
//! drop the holding collection, delete the record.

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use mongodb::options::ReturnDocument;

use super::audit::{Action, AuditContext};
use super::model::{DeletedOrgDoc, DeletedState, Pending, PurgeReport};
use super::outbox::{self, OutboxEntry};
use super::{db_error, Store};
use crate::error::ApiError;
use crate::failpoint;

impl Store {
    /// One purge run: settles up to `batch` records that an interrupted
    /// delete, restore or purge left past its lease, then purges up to
    /// `batch` deleted organizations past `purge_after` (oldest first): the
    /// holding collection, then the record (which holds the admin). A run
    /// that stops half-way leaves each record claimed, and the next run
    /// finishes it.
    pub async fn purge_due(&self, batch: usize) -> Result<PurgeReport, ApiError> {
        self.ensure_deleted_indexes().await?;
        let mut report = PurgeReport::default();
        let stale_before = self.lease_cutoff();
        let mut stale = self
            .deleted
            .find(doc! {
                "state": { "$in": [
                    DeletedState::Deleting.as_str(),
                    DeletedState::Restoring.as_str(),
                    DeletedState::Purging.as_str(),
                ] },
                "pending.started_at": { "$lte": stale_before },
            })
            .limit(i64::try_from(batch).unwrap_or(i64::MAX))
            .await
            .map_err(db_error)?;
        let mut records = Vec::new();
        while stale.advance().await.map_err(db_error)? {
            records.push(stale.deserialize_current().map_err(db_error)?);
        }
        for record in records {
            self.settle_record(record).await?;
            report.settled += 1;
        }
        for _ in 0..batch {
            let now = DateTime::now();
            let claimed = self
                .claim_record(
                    doc! { "purge_after": { "$lte": now } },
                    DeletedState::Purging,
                    now,
                )
                .await?;
            let Some(record) = claimed else {
                return Ok(report);
            };
            failpoint::hit("purge:after_claim");
            report.events.extend(self.finish_purge(&record).await?);
            report.purged += 1;
        }
        report.more = self
            .deleted
            .find_one(doc! {
                "state": DeletedState::Deleted.as_str(),
                "purge_after": { "$lte": DateTime::now() },
            })
            .await
            .map_err(db_error)?
            .is_some();
        Ok(report)
    }

    /// Claims for a restore or a purge (`to`) the `deleted` record that
    /// matches `filter` (the one due first), under a new operation id: a
    /// compare-and-set on the state, so one claim wins.
    pub(super) async fn claim_record(
        &self,
        mut filter: mongodb::bson::Document,
        to: DeletedState,
        now: DateTime,
    ) -> Result<Option<DeletedOrgDoc>, ApiError> {
        filter.insert("state", DeletedState::Deleted.as_str());
        let claim = mongodb::bson::to_document(&Pending::of(ObjectId::new(), now))
            .map_err(ApiError::internal)?;
        self.deleted
            .find_one_and_update(
                filter,
                doc! { "$set": { "state": to.as_str(), "pending": claim } },
            )
            .sort(doc! { "state": 1, "purge_after": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)
    }

    /// Steps 2-4 of a purge: the event, the holding collection, the record.
    pub(super) async fn finish_purge(
        &self,
        record: &DeletedOrgDoc,
    ) -> Result<Option<OutboxEntry>, ApiError> {
        let op_id = record
            .op_id()
            .ok_or_else(|| ApiError::internal("purging a record without its claim"))?;
        let event = self
            .record_outcome(
                op_id,
                record.organization_id,
                (
                    outbox::PURGED,
                    outbox::purged(record.organization_id, &record.name),
                ),
                Action::OrganizationPurged,
                Some(&AuditContext::system("purge")),
            )
            .await?;
        self.drop_tenant_collection(&record.holding_collection)
            .await?;
        failpoint::hit("purge:after_drop");
        self.deleted
            .delete_one(doc! { "_id": record.id, "state": DeletedState::Purging.as_str() })
            .await
            .map_err(db_error)?;
        Ok(event)
    }
}
