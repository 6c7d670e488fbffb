//! The documents of the master database and the states an organization
//! goes through; no I/O here.

use mongodb::bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

use super::outbox::OutboxEntry;
use crate::domain::{Email, OrgName};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgState {
    Active,
    Creating,
    Renaming,
    Deleting,
    /// Coming back from a soft delete (`POST /org/restore`).
    Restoring,
}

impl OrgState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrgState::Active => "active",
            OrgState::Creating => "creating",
            OrgState::Renaming => "renaming",
            OrgState::Deleting => "deleting",
            OrgState::Restoring => "restoring",
        }
    }

    /// An admin may log in while the organization is active or being renamed
    /// (the token names the immutable id), not while it is half-made or going.
    pub fn allows_login(self) -> bool {
        matches!(self, OrgState::Active | OrgState::Renaming)
    }

    pub(crate) fn in_progress(self) -> &'static str {
        match self {
            OrgState::Active => "in use",
            OrgState::Creating => "being created",
            OrgState::Renaming => "being renamed",
            OrgState::Deleting => "being deleted",
            OrgState::Restoring => "being restored",
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
    /// Delete: when the organization is purged; none removes it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<DateTime>,
    /// Restore: the token version the admin comes back with (one past the
    /// one it was deleted with, so no earlier token works again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_version: Option<i64>,
    /// Who started the operation, from where: its audit entry's context,
    /// written by whoever finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<super::audit::AuditContext>,
}

impl Pending {
    /// A new operation's record, started `now`.
    pub fn new(now: DateTime) -> Self {
        Self {
            op_id: ObjectId::new(),
            started_at: now,
            admin_email: None,
            password_hash: None,
            from_name: None,
            to_name: None,
            purge_after: None,
            token_version: None,
            audit: None,
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

/// Where a deleted organization's record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletedState {
    /// Written by a delete still under way (the organization document still
    /// exists, in state `deleting`).
    Deleting,
    /// Restorable until `purge_after`.
    Deleted,
    /// Claimed by a restore.
    Restoring,
    /// Claimed by a purge.
    Purging,
}

impl DeletedState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeletedState::Deleting => "deleting",
            DeletedState::Deleted => "deleted",
            DeletedState::Restoring => "restoring",
            DeletedState::Purging => "purging",
        }
    }
}

/// The admin of a deleted organization, kept for the restore's credential
/// check and to come back with it; the `admins` document itself is gone, so
/// the email is free and no session survives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeletedAdmin {
    pub id: ObjectId,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime,
    pub token_version: i64,
}

/// A document of `deleted_organizations`: one soft delete, keyed by the
/// delete's operation id, holding what a restore needs until `purge_after`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeletedOrgDoc {
    /// The delete's operation id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub organization_id: ObjectId,
    /// The name it had when deleted (free for others at once).
    pub name: String,
    /// Where its tenant collection waits: named after the organization id.
    pub holding_collection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<DeletedAdmin>,
    pub created_at: DateTime,
    pub deleted_at: DateTime,
    pub purge_after: DateTime,
    pub state: DeletedState,
    /// The restore or purge that claimed it; a delete under way uses its own
    /// operation id (`_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<String>,
}

/// The holding collection of organization `org_id` while it is deleted: not
/// `org_<...>`, so no organization name can ever claim it.
pub fn holding_collection(org_id: ObjectId) -> String {
    format!("deleted_{}", org_id.to_hex())
}

/// What a restore asks for.
pub struct RestoreRequest {
    pub name: OrgName,
    pub email: Email,
    pub password: crate::domain::Password,
    /// The name to come back under when the old one has been taken since.
    pub new_name: Option<OrgName>,
    pub cost: u32,
}

/// What a purge run did.
#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    /// Deleted organizations removed for good.
    pub purged: usize,
    /// Records an interrupted delete, restore or purge left, brought to a
    /// settled state.
    pub settled: usize,
    /// Whether more is due than one run handles (the next run goes on).
    pub more: bool,
    /// The events of the purges this run made, for it to publish.
    #[serde(skip)]
    pub events: Vec<OutboxEntry>,
}

/// What a create asks for.
pub struct NewOrganization {
    pub name: OrgName,
    pub email: Email,
    pub password_hash: String,
    /// The provisioning request's fingerprint; none over HTTP.
    pub provisioned: Option<String>,
    /// Who asks, from where (the audit entry's context).
    pub audit: super::audit::AuditContext,
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
    pub(crate) fn is_empty(&self) -> bool {
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
