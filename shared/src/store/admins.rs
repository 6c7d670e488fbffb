//! Admins: looking them up, the session a token stands for (the admin's
//! token version), credential changes that move that version on, and the
//! rehash of a password at the service's cost.

use mongodb::bson::{doc, oid::ObjectId, Document};
use mongodb::options::ReturnDocument;
use tracing::instrument;

use super::audit::{Action, AuditContext};
use super::model::{AdminDoc, CredentialChange, OrgDoc, OrgState};
use super::{db_error, is_duplicate_key, Store};
use crate::domain::Email;
use crate::error::{ApiError, Conflict};

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

pub(super) fn email_taken() -> ApiError {
    ApiError::Conflict(Conflict::EmailTaken)
}

impl Store {
    #[instrument(skip(self))]
    pub async fn find_admin(&self, email: &Email) -> Result<Option<AdminDoc>, ApiError> {
        self.admins
            .find_one(doc! { "email": email.as_str() })
            .await
            .map_err(db_error)
    }

    /// The organization whose admin has `email`, in any state.
    pub async fn org_of_admin(&self, email: &Email) -> Result<Option<OrgDoc>, ApiError> {
        match self.find_admin(email).await? {
            Some(admin) => self.find_org_by_id(admin.organization_id).await,
            None => Ok(None),
        }
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

    /// Applies `change` while the admin is still at the asking session's
    /// token version, moving the version on; the new version, or none when
    /// nothing changed. A session whose version has moved on meanwhile (a
    /// concurrent change through another token) gets a 401.
    ///
    /// The change and its audit entries (`admin.email_changed`,
    /// `admin.password_changed`) are one transaction: two single-document
    /// writes with nothing between them that a transaction cannot hold, so
    /// no crash leaves a change without its entry or an entry without its
    /// change.
    /// One attempt at the transaction of [`Store::change_credentials`]:
    /// the new token version, or none when the session's version has moved
    /// on (nothing written).
    async fn credentials_transaction(
        &self,
        org: &OrgDoc,
        change: &CredentialChange,
        set: &Document,
        entries: &[super::audit::AuditEntry],
    ) -> Result<Option<i64>, mongodb::error::Error> {
        let mut session = self.client.start_session().await?;
        session
            .start_transaction()
            .write_concern(super::durable())
            .await?;
        let changed = self
            .admins
            .find_one_and_update(
                doc! {
                    "_id": org.admin_id,
                    "organization_id": org.id,
                    "token_version": at_token_version(change.token_version),
                },
                doc! { "$set": set.clone(), "$inc": { "token_version": 1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await?;
        let Some(admin) = changed else {
            session.abort_transaction().await?;
            return Ok(None);
        };
        self.audit
            .insert_many(entries)
            .session(&mut session)
            .await?;
        // A commit whose result is unknown may be retried as it is.
        let mut commits = 0;
        loop {
            commits += 1;
            match session.commit_transaction().await {
                Ok(()) => return Ok(Some(admin.token_version)),
                Err(e) if commits < 3 && e.contains_label("UnknownTransactionCommitResult") => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn change_credentials(
        &self,
        org: &OrgDoc,
        change: &CredentialChange,
        audit: &AuditContext,
    ) -> Result<Option<i64>, ApiError> {
        if change.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        if change.email.is_some() {
            entries.push(self.audit_entry(
                ObjectId::new(),
                Some(org.id),
                Action::AdminEmailChanged,
                audit,
            ));
        }
        if change.password_hash.is_some() {
            entries.push(self.audit_entry(
                ObjectId::new(),
                Some(org.id),
                Action::AdminPasswordChanged,
                audit,
            ));
        }
        let mut set = Document::new();
        if let Some(email) = &change.email {
            set.insert("email", email.as_str());
        }
        if let Some(hash) = &change.password_hash {
            set.insert("password_hash", hash.as_str());
        }
        // Two changes racing on one admin conflict inside the server; the
        // loser's transaction is retried as MongoDB documents
        // (TransientTransactionError), and then finds the version moved on.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .credentials_transaction(org, change, &set, &entries)
                .await
            {
                Ok(Some(version)) => return Ok(Some(version)),
                Ok(None) => return Err(STALE_TOKEN),
                Err(e) if attempt < 5 && e.contains_label("TransientTransactionError") => {}
                Err(e) if is_duplicate_key(&e) => return Err(email_taken()),
                Err(e) => return Err(db_error(e)),
            }
        }
    }
}
