//! Create, rename and delete, each a short sequence of idempotent steps
//! recorded on the organization document (`state` plus `pending`), and
//! [`Store::settle`], which finishes (or rolls back) what a crashed operation
//! left once its lease has run out. See `docs/lifecycle.md`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::options::ReturnDocument;
use tracing::instrument;

use super::admins::email_taken;
use super::audit::{Action, AuditContext};
use super::model::{
    AdminDoc, CredentialChange, Finished, NewOrganization, OrgDoc, OrgState, Pending, Updated,
};
use super::outbox::{self, OutboxEntry};
use super::{
    db_error, is_duplicate_key, later, server_code, Store, NAMESPACE_EXISTS, NAMESPACE_NOT_FOUND,
};
use crate::domain::OrgName;
use crate::error::{ApiError, Conflict};
use crate::failpoint;

fn conflict_in_progress(doc: &OrgDoc) -> ApiError {
    ApiError::Conflict(Conflict::InProgress {
        name: doc.name.clone(),
        doing: doc.state.in_progress(),
    })
}

fn name_taken(name: &OrgName) -> ApiError {
    ApiError::Conflict(Conflict::NameTaken {
        name: name.as_str().to_owned(),
    })
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

impl Store {
    /// Brings an organization met in any state to a settled one: active
    /// (`Some`) or gone (`None`). An operation still within its lease is left
    /// alone and reported as a 409; one past it is finished here.
    async fn settle(&self, doc: OrgDoc) -> Result<Option<OrgDoc>, ApiError> {
        if doc.state == OrgState::Active {
            return Ok(Some(doc));
        }
        if !self.past_lease(doc.pending.as_ref()) {
            return Err(conflict_in_progress(&doc));
        }
        tracing::warn!(
            organization_id = %doc.id,
            state = doc.state.as_str(),
            "finishing an operation abandoned past its lease"
        );
        // Boxed: every read that meets an organization awaits this, and the
        // finishing steps of five operations would otherwise sit inline in
        // each of those futures (a debug build's test thread overflows).
        Box::pin(self.finish_abandoned(doc)).await
    }

    async fn finish_abandoned(&self, doc: OrgDoc) -> Result<Option<OrgDoc>, ApiError> {
        match doc.state {
            OrgState::Active => Ok(Some(doc)),
            OrgState::Creating => match self.finish_create(&doc).await {
                Ok((done, _)) => Ok(Some(done)),
                Err(ApiError::Conflict(Conflict::EmailTaken)) => Ok(None),
                Err(e) => Err(e),
            },
            // Events of operations finished here wait for the scheduled flush.
            OrgState::Renaming => self.finish_rename(&doc).await.map(|(d, _)| Some(d)),
            OrgState::Deleting => self.finish_delete(&doc).await.map(|_| None),
            OrgState::Restoring => match self.finish_restore(&doc).await {
                Ok((done, _)) => Ok(Some(done)),
                Err(ApiError::Conflict(Conflict::EmailTaken)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    pub(super) async fn find_org(&self, filter: Document) -> Result<Option<OrgDoc>, ApiError> {
        self.orgs.find_one(filter).await.map_err(db_error)
    }

    pub(super) async fn require_org(&self, filter: Document) -> Result<OrgDoc, ApiError> {
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

    /// The organization doc as stored, in whatever state, for login checks.
    pub async fn find_org_by_id(&self, id: ObjectId) -> Result<Option<OrgDoc>, ApiError> {
        self.find_org(doc! { "_id": id }).await
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
            audit,
        } = new;
        let name = &name;
        if let Some(max) = max_organizations {
            let existing = self
                .orgs
                .estimated_document_count()
                .await
                .map_err(db_error)?;
            if existing >= max {
                return Err(ApiError::Conflict(Conflict::OrganizationLimitReached {
                    max,
                }));
            }
        }
        self.ensure_unique_indexes().await?;
        let now = DateTime::now();
        let mut pending = Pending::new(now);
        pending.admin_email = Some(email.as_str().to_owned());
        pending.password_hash = Some(password_hash);
        pending.audit = Some(audit);
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
        if !self.insert_pending_admin(org, pending).await? {
            self.roll_back_create(org).await?;
            return Err(email_taken());
        }
        failpoint::hit("create:after_admin_insert");

        self.create_tenant_collection(&org.collection_name).await?;
        let event = self
            .record_outcome(
                pending.op_id,
                org.id,
                (
                    outbox::CREATED,
                    outbox::created(org.id, &org.name, &org.collection_name, org.admin_id),
                ),
                Action::OrganizationCreated,
                pending.audit.as_ref(),
            )
            .await?;
        failpoint::hit("create:after_collection");

        let done = self.activate(org, doc! {}, doc! {}, None).await?;
        Ok((done, event))
    }

    /// Inserts the admin an organization's pending create or restore
    /// carries (at `pending.token_version`, 0 for a new one); true when it
    /// is there now (this call or an earlier attempt put it there), false
    /// when another admin has the email.
    pub(super) async fn insert_pending_admin(
        &self,
        org: &OrgDoc,
        pending: &Pending,
    ) -> Result<bool, ApiError> {
        let (Some(email), Some(hash)) = (&pending.admin_email, &pending.password_hash) else {
            return Err(ApiError::internal("pending organization without its admin"));
        };
        let admin = AdminDoc {
            id: org.admin_id,
            email: email.clone(),
            password_hash: hash.clone(),
            organization_id: org.id,
            created_at: org.created_at,
            token_version: pending.token_version.unwrap_or(0),
        };
        match self.admins.insert_one(&admin).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(self
                .admins
                .find_one(doc! { "_id": org.admin_id })
                .await
                .map_err(db_error)?
                .is_some()),
            Err(e) => Err(db_error(e)),
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

    pub(super) async fn create_tenant_collection(&self, name: &str) -> Result<(), ApiError> {
        match self.tenant.create_collection(name).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    pub(super) async fn drop_tenant_collection(&self, name: &str) -> Result<(), ApiError> {
        match self.tenant.collection::<Document>(name).drop().await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Renames the organization `org_id` to `new_name` and/or changes its
    /// admin's credentials.
    #[instrument(skip(self, credentials, audit), fields(organization_id = %org_id, new_name = %new_name))]
    pub async fn update_org(
        &self,
        org_id: ObjectId,
        admin_id: ObjectId,
        new_name: &OrgName,
        credentials: CredentialChange,
        audit: &AuditContext,
    ) -> Result<Updated, ApiError> {
        let org = self.get_org_by_id(org_id).await?;
        check_admin(&org, admin_id)?;
        // The read above needs no index; what follows claims a name or an
        // email, which only the unique indexes keep single.
        self.ensure_unique_indexes().await?;
        if org.name == new_name.as_str() {
            let token_version = self.change_credentials(&org, &credentials, audit).await?;
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
        pending.audit = Some(audit.clone());
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

        let token_version = match self.change_credentials(&claimed, &credentials, audit).await {
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
        let to_collection = OrgName::from_stored(to.clone()).collection_name();
        self.move_tenant_collection_or_recreate(
            org.id,
            &OrgName::from_stored(from.clone()).collection_name(),
            &to_collection,
        )
        .await?;
        let event = self
            .record_outcome(
                pending.op_id,
                org.id,
                (
                    outbox::RENAMED,
                    outbox::renamed(org.id, from, to, &to_collection),
                ),
                Action::OrganizationRenamed,
                pending.audit.as_ref(),
            )
            .await?;
        failpoint::hit("rename:after_collection_rename");

        let done = self
            .activate(
                org,
                doc! { "pending.op_id": pending.op_id },
                doc! { "name": to, "names": [to], "collection_name": &to_collection },
                Some(to),
            )
            .await?;
        Ok((done, event))
    }

    /// The last step of a create or a rename: the organization becomes
    /// active, with `set` applied, provided it is still in the operation's
    /// state and matches `filter`. If someone else finished it first, the
    /// organization as it is now, when active (and called `name`, if given).
    pub(super) async fn activate(
        &self,
        org: &OrgDoc,
        mut filter: Document,
        mut set: Document,
        name: Option<&str>,
    ) -> Result<OrgDoc, ApiError> {
        filter.insert("_id", org.id);
        filter.insert("state", org.state.as_str());
        set.insert("state", OrgState::Active.as_str());
        set.insert("updated_at", DateTime::now());
        let done = self
            .orgs
            .find_one_and_update(filter, doc! { "$set": set, "$unset": { "pending": "" } })
            .return_document(ReturnDocument::After)
            .await
            .map_err(db_error)?;
        match done {
            Some(doc) => Ok(doc),
            None => self
                .find_org(doc! { "_id": org.id })
                .await?
                .filter(|d| d.state == OrgState::Active && name.is_none_or(|n| d.name == n))
                .ok_or_else(|| conflict_in_progress(org)),
        }
    }

    pub(super) async fn tenant_collection_exists(&self, name: &str) -> Result<bool, ApiError> {
        let names = self
            .tenant
            .list_collection_names()
            .filter(doc! { "name": name })
            .await
            .map_err(db_error)?;
        Ok(!names.is_empty())
    }

    /// Deletes the organization called `name`, which must be `org_id`:
    /// restorable for `retention` (a soft delete, see [`Store::restore_org`]),
    /// or at once when there is none.
    #[instrument(skip(self, audit), fields(organization_id = %org_id, organization_name = %name))]
    pub async fn delete_org(
        &self,
        org_id: ObjectId,
        admin_id: ObjectId,
        name: &OrgName,
        retention: Option<Duration>,
        audit: &AuditContext,
    ) -> Result<Finished, ApiError> {
        // No unique index is needed here: a delete claims nothing.
        let Some(org) = self.find_org(doc! { "name": name.as_str() }).await? else {
            // This delete's own earlier attempt may have gone as far as
            // removing the document but not marking its record.
            return self
                .finish_own_soft_delete(org_id, name)
                .await?
                .ok_or_else(|| ApiError::NotFound("organization not found".into()));
        };
        if org.id != org_id {
            return Err(ApiError::Forbidden(
                "the token does not belong to this organization",
            ));
        }
        check_admin(&org, admin_id)?;
        // A delete abandoned by an earlier attempt is finished and answered
        // as this request's own; any other operation in progress is a 409.
        if org.state == OrgState::Deleting && self.past_lease(org.pending.as_ref()) {
            let event = self.finish_delete(&org).await?;
            return Ok(Finished { org, event });
        }
        let org = self
            .settle(org)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))?;
        failpoint::hit("delete:before_mark");
        let mut pending = Pending::new(DateTime::now());
        pending.purge_after = retention.map(|r| later(pending.started_at, r));
        pending.audit = Some(audit.clone());
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
    /// half-deleted organization), then the collection, then the record; a
    /// soft delete keeps both in a record instead
    /// ([`Store::finish_soft_delete`]).
    pub(super) async fn finish_delete(
        &self,
        org: &OrgDoc,
    ) -> Result<Option<OutboxEntry>, ApiError> {
        if let Some(p) = &org.pending {
            if let Some(purge_after) = p.purge_after {
                return Box::pin(self.finish_soft_delete(org, p, purge_after)).await;
            }
        }
        let event = match &org.pending {
            Some(p) => {
                self.record_outcome(
                    p.op_id,
                    org.id,
                    (outbox::DELETED, outbox::deleted(org.id, &org.name, None)),
                    Action::OrganizationDeleted,
                    p.audit.as_ref(),
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
}
