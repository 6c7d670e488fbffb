//! Soft-deleted organizations: the record a delete leaves in
//! `deleted_organizations` while `DELETED_RETENTION_DAYS` run, and the
//! restore that brings an organization back from it (the purge that makes
//! the delete final is [`super::purge`]). Each is a short sequence of idempotent steps recorded on
//! the record (`state` plus `pending`) and, for a restore, on the
//! organization document too; see `docs/lifecycle.md`.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use super::audit::{Action, AuditContext};
use super::model::{
    holding_collection, DeletedAdmin, DeletedOrgDoc, DeletedState, Finished, OrgDoc, OrgState,
    Pending,
};
use super::outbox::{self, OutboxEntry};
use super::{db_error, is_duplicate_key, Store};
use crate::domain::OrgName;
use crate::error::{ApiError, Conflict};
use crate::failpoint;

fn not_found() -> ApiError {
    ApiError::no_deleted_organization()
}

fn in_progress(name: &str, doing: &'static str) -> ApiError {
    ApiError::Conflict(Conflict::InProgress {
        name: name.to_owned(),
        doing,
    })
}

impl DeletedOrgDoc {
    /// The organization as it was when deleted (a delete's answer).
    fn as_org(&self) -> OrgDoc {
        let name = OrgName::from_stored(self.name.clone());
        OrgDoc {
            id: self.organization_id,
            names: vec![self.name.clone()],
            collection_name: name.collection_name(),
            name: self.name.clone(),
            admin_id: self.admin.as_ref().map_or(ObjectId::new(), |a| a.id),
            created_at: self.created_at,
            updated_at: self.deleted_at,
            state: OrgState::Deleting,
            pending: None,
            provisioned: self.provisioned.clone(),
        }
    }

    pub(super) fn op_id(&self) -> Option<ObjectId> {
        self.pending.as_ref().map(|p| p.op_id)
    }
}

impl Pending {
    pub(super) fn of(op_id: ObjectId, started_at: DateTime) -> Self {
        let mut pending = Pending::new(started_at);
        pending.op_id = op_id;
        pending
    }
}

/// Where a collection move found things.
pub(super) enum Moved {
    /// Moved now, or by an earlier attempt (the target is there).
    Done,
    /// Neither the source nor the target exists.
    Missing,
}

/// A restore done as far as its caller needs: the organization active and
/// its event recorded. What is left is removing the deleted record it came
/// from, which waits for nothing else, so the caller runs
/// [`Store::remove_restored_record`] beside publishing the event. A record
/// that stays behind (a crash, a failed removal) is removed the next time
/// anything settles it (`Store::settle_record`).
#[must_use = "the deleted record stays until Store::remove_restored_record"]
#[derive(Debug)]
pub struct Restored {
    pub finished: Finished,
    /// The filter of the deleted record left to remove, if any.
    record: Option<Document>,
}

impl Restored {
    /// `finished` restoring `org` (the organization document `restoring`,
    /// which names its operation).
    fn of(finished: Finished, org: &OrgDoc) -> Self {
        let record = org
            .pending
            .as_ref()
            .map(|p| doc! { "organization_id": org.id, "pending.op_id": p.op_id });
        Restored { finished, record }
    }
}

impl Store {
    /// `renameCollection` within the tenant database, idempotent: a source
    /// already gone with the target in place is an earlier attempt's move.
    pub(super) async fn move_tenant_collection(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Moved, ApiError> {
        let from_ns = format!("{}.{}", self.tenant_db, from);
        let to_ns = format!("{}.{}", self.tenant_db, to);
        let renamed = self
            .client
            .database("admin")
            .run_command(doc! { "renameCollection": &from_ns, "to": &to_ns, "dropTarget": false })
            .await;
        match renamed {
            Ok(_) => Ok(Moved::Done),
            Err(e) if super::server_code(&e) == Some(super::NAMESPACE_NOT_FOUND) => {
                if self.tenant_collection_exists(to).await? {
                    Ok(Moved::Done)
                } else {
                    Ok(Moved::Missing)
                }
            }
            Err(e) => Err(db_error(e)),
        }
    }

    /// Moves a collection that must end up at `to`: one found at neither
    /// name is recreated empty there (and logged).
    pub(super) async fn move_tenant_collection_or_recreate(
        &self,
        org_id: ObjectId,
        from: &str,
        to: &str,
    ) -> Result<(), ApiError> {
        if let Moved::Missing = self.move_tenant_collection(from, to).await? {
            tracing::error!(organization_id = %org_id, collection = to, "tenant collection missing; recreating it empty");
            self.create_tenant_collection(to).await?;
        }
        Ok(())
    }

    /// Steps 2-6 of a soft delete (`pending.purge_after` set), each
    /// idempotent: the event, the record (with the admin's credentials, for
    /// a restore), the admins, the collection to its holding name, the
    /// organization document (which frees the name), the record marked
    /// `deleted`.
    pub(super) async fn finish_soft_delete(
        &self,
        org: &OrgDoc,
        pending: &Pending,
        purge_after: DateTime,
    ) -> Result<Option<OutboxEntry>, ApiError> {
        let event = self
            .record_outcome(
                pending.op_id,
                org.id,
                (
                    outbox::DELETED,
                    outbox::deleted(org.id, &org.name, Some(purge_after)),
                ),
                Action::OrganizationDeleted,
                pending.audit.as_ref(),
            )
            .await?;
        let admin = self
            .admins
            .find_one(doc! { "_id": org.admin_id })
            .await
            .map_err(db_error)?;
        let record = DeletedOrgDoc {
            id: pending.op_id,
            organization_id: org.id,
            name: org.name.clone(),
            holding_collection: holding_collection(org.id),
            admin: admin.map(|a| DeletedAdmin {
                id: a.id,
                email: a.email,
                password_hash: a.password_hash,
                created_at: a.created_at,
                token_version: a.token_version,
            }),
            created_at: org.created_at,
            deleted_at: pending.started_at,
            purge_after,
            state: DeletedState::Deleting,
            pending: Some(Pending::of(pending.op_id, pending.started_at)),
            provisioned: org.provisioned.clone(),
        };
        match self.deleted.insert_one(&record).await {
            Ok(_) => {}
            // Written by an earlier attempt of this delete (its `_id`).
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(db_error(e)),
        }
        failpoint::hit("soft_delete:after_record");
        self.admins
            .delete_many(doc! { "organization_id": org.id })
            .await
            .map_err(db_error)?;
        failpoint::hit("soft_delete:after_admins");
        self.move_tenant_collection(&org.collection_name, &record.holding_collection)
            .await?;
        failpoint::hit("soft_delete:after_hold");
        self.orgs
            .delete_one(doc! { "_id": org.id, "state": OrgState::Deleting.as_str() })
            .await
            .map_err(db_error)?;
        failpoint::hit("soft_delete:after_org_removed");
        self.mark_deleted(pending.op_id).await?;
        Ok(event)
    }

    /// The last step of a soft delete: the record becomes restorable.
    async fn mark_deleted(&self, record_id: ObjectId) -> Result<(), ApiError> {
        self.deleted
            .update_one(
                doc! { "_id": record_id, "state": DeletedState::Deleting.as_str() },
                doc! { "$set": { "state": DeletedState::Deleted.as_str() }, "$unset": { "pending": "" } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// A delete of `org_id` called `name` that has removed the organization
    /// document but not yet marked its record: finished here and answered
    /// as the delete (its retry); `None` when there is no such delete.
    pub(super) async fn finish_own_soft_delete(
        &self,
        org_id: ObjectId,
        name: &OrgName,
    ) -> Result<Option<Finished>, ApiError> {
        let record = self
            .deleted
            .find_one(doc! {
                "organization_id": org_id,
                "name": name.as_str(),
                "state": DeletedState::Deleting.as_str(),
            })
            .await
            .map_err(db_error)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let org = record.as_org();
        self.settle_record(record).await?;
        Ok(Some(Finished { org, event: None }))
    }

    /// Brings a record an interrupted delete, restore or purge left to a
    /// settled state: `deleted` (`Some`), or gone (`None`: purged, or
    /// restored). The caller has checked that its operation's lease has run
    /// out.
    pub(super) async fn settle_record(
        &self,
        record: DeletedOrgDoc,
    ) -> Result<Option<DeletedOrgDoc>, ApiError> {
        match record.state {
            DeletedState::Deleted => return Ok(Some(record)),
            DeletedState::Deleting => {
                let org = self
                    .find_org(doc! { "_id": record.organization_id, "pending.op_id": record.id })
                    .await?;
                match org {
                    Some(org) if org.state == OrgState::Deleting => {
                        self.finish_delete(&org).await?;
                    }
                    _ => {
                        // The organization document is gone: what is left is
                        // the move (repeatable) and the mark.
                        let collection =
                            OrgName::from_stored(record.name.clone()).collection_name();
                        self.move_tenant_collection(&collection, &record.holding_collection)
                            .await?;
                        self.mark_deleted(record.id).await?;
                    }
                }
            }
            DeletedState::Restoring => {
                let op_id = record.op_id();
                let org = self
                    .find_org(doc! { "_id": record.organization_id })
                    .await?;
                match org {
                    Some(org)
                        if org.state == OrgState::Restoring
                            && org.pending.as_ref().map(|p| p.op_id) == op_id =>
                    {
                        match self.finish_restore(&org).await {
                            Ok(_) => return Ok(None),
                            Err(ApiError::Conflict(Conflict::EmailTaken)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    // Restored (the organization is back, by this or an
                    // earlier record): only the record was left.
                    Some(_) => {
                        self.deleted
                            .delete_one(doc! { "_id": record.id })
                            .await
                            .map_err(db_error)?;
                        return Ok(None);
                    }
                    None => self.release_record(&record).await?,
                }
            }
            DeletedState::Purging => {
                self.finish_purge(&record).await?;
                return Ok(None);
            }
        }
        self.deleted
            .find_one(doc! { "_id": record.id })
            .await
            .map_err(db_error)
    }

    /// Gives a record claimed by a restore that cannot go on back to
    /// `deleted`.
    async fn release_record(&self, record: &DeletedOrgDoc) -> Result<(), ApiError> {
        self.deleted
            .update_one(
                doc! {
                    "_id": record.id,
                    "state": DeletedState::Restoring.as_str(),
                    "pending.op_id": record.op_id(),
                },
                doc! { "$set": { "state": DeletedState::Deleted.as_str() }, "$unset": { "pending": "" } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The newest record of a deleted organization called `name` whose admin
    /// had `email`, in any state: the restore checks the password against
    /// it before it says anything. It does not wait for
    /// [`Store::ensure_deleted_indexes`]: those indexes are plain, so they
    /// only speed this read up, and the restore builds them while it checks
    /// the password; a cold start's first restore would otherwise hold its
    /// password check back until they were built.
    pub async fn find_deleted(
        &self,
        name: &OrgName,
        email: &crate::domain::Email,
    ) -> Result<Option<DeletedOrgDoc>, ApiError> {
        self.deleted
            .find_one(doc! { "name": name.as_str(), "admin.email": email.as_str() })
            .sort(doc! { "deleted_at": -1 })
            .await
            .map_err(db_error)
    }

    /// Restores the organization of `record` (its credentials checked by the
    /// caller) under its old name, or under `new_name` when the old one has
    /// been taken since. Steps, each idempotent: claim the record; insert
    /// the organization `restoring` (claims the name); insert the admin at
    /// its next token version; move the collection back; record the event;
    /// activate; and, by the caller, remove the record ([`Restored`]).
    pub async fn restore_org(
        &self,
        record: DeletedOrgDoc,
        new_name: Option<&OrgName>,
        audit: &AuditContext,
    ) -> Result<Restored, ApiError> {
        let record = match record.state {
            DeletedState::Deleted => record,
            _ if !self.past_lease(record.pending.as_ref()) => {
                return Err(match record.state {
                    DeletedState::Purging => not_found(),
                    DeletedState::Restoring => in_progress(&record.name, "being restored"),
                    _ => in_progress(&record.name, "being deleted"),
                })
            }
            _ => {
                let org_id = record.organization_id;
                match self.settle_record(record).await? {
                    Some(settled) => settled,
                    // Restored by an earlier attempt: answered as this one.
                    None => {
                        let org = self
                            .find_org(doc! { "_id": org_id, "state": OrgState::Active.as_str() })
                            .await?
                            .ok_or_else(not_found)?;
                        return Ok(Restored {
                            finished: Finished { org, event: None },
                            record: None,
                        });
                    }
                }
            }
        };
        let Some(admin) = record.admin.clone() else {
            return Err(not_found());
        };
        self.ensure_unique_indexes().await?;
        let now = DateTime::now();
        let claimed = self
            .claim_record(
                doc! { "_id": record.id, "purge_after": { "$gt": now } },
                DeletedState::Restoring,
                now,
            )
            .await?;
        let Some(claimed) = claimed else {
            let current = self
                .deleted
                .find_one(doc! { "_id": record.id })
                .await
                .map_err(db_error)?;
            return Err(match current.map(|r| r.state) {
                Some(DeletedState::Restoring) => in_progress(&record.name, "being restored"),
                _ => not_found(),
            });
        };
        let op_id = claimed
            .op_id()
            .ok_or_else(|| ApiError::internal("a claimed record without its claim"))?;
        failpoint::hit("restore:after_claim");

        let old = OrgName::from_stored(record.name.clone());
        let mut names = vec![&old];
        names.extend(new_name.filter(|n| *n != &old));
        let mut org = None;
        for name in &names {
            let mut pending = Pending::of(op_id, now);
            pending.admin_email = Some(admin.email.clone());
            pending.password_hash = Some(admin.password_hash.clone());
            pending.from_name = Some(record.name.clone());
            pending.to_name = Some(name.as_str().to_owned());
            pending.token_version = Some(admin.token_version + 1);
            pending.audit = Some(audit.clone());
            let doc = OrgDoc {
                id: record.organization_id,
                name: name.as_str().to_owned(),
                names: vec![name.as_str().to_owned()],
                collection_name: name.collection_name(),
                admin_id: admin.id,
                created_at: record.created_at,
                updated_at: now,
                state: OrgState::Restoring,
                pending: Some(pending),
                provisioned: record.provisioned.clone(),
            };
            match self.orgs.insert_one(&doc).await {
                Ok(_) => {
                    org = Some(doc);
                    break;
                }
                Err(e) if is_duplicate_key(&e) => {
                    if self
                        .find_org(doc! { "_id": record.organization_id })
                        .await?
                        .is_some()
                    {
                        // The organization exists (a restore from another
                        // record got there first).
                        self.release_record(&claimed).await?;
                        return Err(in_progress(&record.name, "being restored"));
                    }
                }
                Err(e) => return Err(db_error(e)),
            }
        }
        let Some(org) = org else {
            self.release_record(&claimed).await?;
            return Err(ApiError::Conflict(match new_name {
                None => Conflict::RestoreNameTaken {
                    name: record.name.clone(),
                },
                Some(n) => Conflict::NameTaken {
                    name: n.as_str().to_owned(),
                },
            }));
        };
        failpoint::hit("restore:after_org_insert");
        let (done, event) = self.activate_restored(&org).await?;
        Ok(Restored::of(Finished { org: done, event }, &org))
    }

    /// The last step of a restore: the deleted record it came from goes.
    pub async fn remove_restored_record(&self, restored: &Restored) -> Result<(), ApiError> {
        if let Some(record) = &restored.record {
            self.deleted
                .delete_one(record.clone())
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// Steps 3-7 of a restore, from the organization document `restoring`:
    /// what settles one abandoned past its lease. An email taken meanwhile
    /// rolls the restore back: the organization stays deleted.
    pub(super) async fn finish_restore(
        &self,
        org: &OrgDoc,
    ) -> Result<(OrgDoc, Option<OutboxEntry>), ApiError> {
        let (done, event) = self.activate_restored(org).await?;
        let restored = Restored::of(Finished { org: done, event }, org);
        self.remove_restored_record(&restored).await?;
        Ok((restored.finished.org, restored.finished.event))
    }

    /// Steps 3-6 of a restore: admin, collection, event, activation.
    async fn activate_restored(
        &self,
        org: &OrgDoc,
    ) -> Result<(OrgDoc, Option<OutboxEntry>), ApiError> {
        let pending = org
            .pending
            .as_ref()
            .ok_or_else(|| ApiError::internal("restoring organization without pending data"))?;
        let Some(from) = &pending.from_name else {
            return Err(ApiError::internal(
                "restoring organization without its old name",
            ));
        };
        if !self.insert_pending_admin(org, pending).await? {
            self.roll_back_restore(org, pending.op_id).await?;
            return Err(ApiError::Conflict(Conflict::EmailTaken));
        }
        failpoint::hit("restore:after_admin_insert");
        self.move_tenant_collection_or_recreate(
            org.id,
            &holding_collection(org.id),
            &org.collection_name,
        )
        .await?;
        let event = self
            .record_outcome(
                pending.op_id,
                org.id,
                (
                    outbox::RESTORED,
                    outbox::restored(org.id, from, &org.name, &org.collection_name),
                ),
                Action::OrganizationRestored,
                pending.audit.as_ref(),
            )
            .await?;
        failpoint::hit("restore:after_collection");
        let done = self
            .activate(
                org,
                doc! { "pending.op_id": pending.op_id },
                doc! {},
                Some(&org.name),
            )
            .await?;
        failpoint::hit("restore:after_activate");
        Ok((done, event))
    }

    async fn roll_back_restore(&self, org: &OrgDoc, op_id: ObjectId) -> Result<(), ApiError> {
        self.outbox
            .delete_one(doc! { "_id": op_id })
            .await
            .map_err(db_error)?;
        self.orgs
            .delete_one(doc! { "_id": org.id, "state": OrgState::Restoring.as_str(), "pending.op_id": op_id })
            .await
            .map_err(db_error)?;
        self.deleted
            .update_one(
                doc! { "organization_id": org.id, "pending.op_id": op_id },
                doc! { "$set": { "state": DeletedState::Deleted.as_str() }, "$unset": { "pending": "" } },
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
