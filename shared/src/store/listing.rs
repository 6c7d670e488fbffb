//! The operator listing: every organization, live ones from `organizations`
//! and deleted ones from `deleted_organizations`, in one order by name.
//!
//! A row's key is (name, source, id): the live organization first, then
//! deleted records of the same name (a name is free again at once after a
//! delete) by record id. Each source is read in that order through an index
//! (`name_unique`, and `name_id` of the deleted records), and the two are
//! merged; a page ends at a key, so rows written meanwhile never shift one.
//!
//! An organization being deleted or restored has a document and a record
//! at once; it is listed once, as its document (the record shows only when
//! a crash left it without one).

use std::collections::HashSet;

use mongodb::bson::{doc, oid::ObjectId, Document};
use mongodb::options::Hint;
use mongodb::Collection;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{DeletedOrgDoc, DeletedState, OrgDoc, OrgState};
use super::{db_error, Store};
use crate::domain::rfc3339;
use crate::error::ApiError;

/// An organization's state as the listing shows it: a live one's, or a
/// deleted one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListedState {
    Active,
    Creating,
    Renaming,
    Deleting,
    Restoring,
    /// Restorable until `purge_after`.
    Deleted,
    /// Being removed for good.
    Purging,
}

impl ListedState {
    pub const ALL: [ListedState; 7] = [
        ListedState::Active,
        ListedState::Creating,
        ListedState::Renaming,
        ListedState::Deleting,
        ListedState::Restoring,
        ListedState::Deleted,
        ListedState::Purging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListedState::Active => "active",
            ListedState::Creating => "creating",
            ListedState::Renaming => "renaming",
            ListedState::Deleting => "deleting",
            ListedState::Restoring => "restoring",
            ListedState::Deleted => "deleted",
            ListedState::Purging => "purging",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    fn of_org(state: OrgState) -> Self {
        match state {
            OrgState::Active => ListedState::Active,
            OrgState::Creating => ListedState::Creating,
            OrgState::Renaming => ListedState::Renaming,
            OrgState::Deleting => ListedState::Deleting,
            OrgState::Restoring => ListedState::Restoring,
        }
    }

    fn of_record(state: DeletedState) -> Self {
        match state {
            DeletedState::Deleting => ListedState::Deleting,
            DeletedState::Deleted => ListedState::Deleted,
            DeletedState::Restoring => ListedState::Restoring,
            DeletedState::Purging => ListedState::Purging,
        }
    }

    /// The organization documents' state this one is, if any.
    fn org_state(self) -> Option<OrgState> {
        [
            OrgState::Active,
            OrgState::Creating,
            OrgState::Renaming,
            OrgState::Deleting,
            OrgState::Restoring,
        ]
        .into_iter()
        .find(|s| Self::of_org(*s) == self)
    }

    /// The deleted records' state this one is, if any.
    fn record_state(self) -> Option<DeletedState> {
        [
            DeletedState::Deleting,
            DeletedState::Deleted,
            DeletedState::Restoring,
            DeletedState::Purging,
        ]
        .into_iter()
        .find(|s| Self::of_record(*s) == self)
    }
}

/// Where a row comes from; live organizations sort first within a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Live,
    Deleted,
}

/// A row's place in the listing: opaque to clients as a cursor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListCursor {
    name: String,
    source: Source,
    id: ObjectId,
}

impl ListCursor {
    /// A version tag, the source (`0` live, `1` deleted), the id (24 hex
    /// digits), then the name's bytes in hex.
    const PREFIX: &'static str = "l1";
    /// Longer than any name this service accepts.
    const MAX_NAME_BYTES: usize = 255;

    pub fn encode(&self) -> String {
        let source = match self.source {
            Source::Live => '0',
            Source::Deleted => '1',
        };
        let name: String = self.name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}{source}{}{name}", Self::PREFIX, self.id.to_hex())
    }

    /// A cursor this service issued; anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(Self::PREFIX)?;
        if !rest.is_ascii() || rest.len() < 1 + 24 + 2 {
            return None;
        }
        let source = match &rest[..1] {
            "0" => Source::Live,
            "1" => Source::Deleted,
            _ => return None,
        };
        let id = ObjectId::parse_str(&rest[1..25]).ok()?;
        let hex = &rest[25..];
        if hex.len() % 2 != 0 || hex.len() / 2 > Self::MAX_NAME_BYTES {
            return None;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Self {
            name: String::from_utf8(bytes).ok()?,
            source,
            id,
        })
    }
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only organizations in this state.
    pub state: Option<ListedState>,
    /// Only names that start with this (already normalised).
    pub prefix: Option<String>,
    /// Continue after this row.
    pub after: Option<ListCursor>,
}

/// One organization as operators see it.
#[derive(Clone, Debug, Serialize)]
pub struct ListedOrganization {
    pub organization_id: String,
    pub organization_name: String,
    pub state: ListedState,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<String>,
}

/// One page of the listing.
#[derive(Debug)]
pub struct ListPage {
    pub organizations: Vec<ListedOrganization>,
    pub next: Option<ListCursor>,
}

/// A row read from either source, before the page is cut.
enum Row {
    Live(OrgDoc),
    Deleted(DeletedOrgDoc),
}

impl Row {
    /// The row's place in the order: name, source, id.
    fn sort_key(&self) -> (&str, Source, ObjectId) {
        match self {
            Row::Live(org) => (&org.name, Source::Live, org.id),
            Row::Deleted(record) => (&record.name, Source::Deleted, record.id),
        }
    }

    /// The cursor that continues after this row.
    fn key(&self) -> ListCursor {
        let (name, source, id) = self.sort_key();
        ListCursor {
            name: name.to_owned(),
            source,
            id,
        }
    }

    /// A deleted record whose organization may still have its document
    /// (a delete or restore under way), which is then the row shown.
    fn shadowed_by(&self) -> Option<ObjectId> {
        match self {
            Row::Deleted(r)
                if matches!(r.state, DeletedState::Deleting | DeletedState::Restoring) =>
            {
                Some(r.organization_id)
            }
            _ => None,
        }
    }

    fn listed(&self) -> ListedOrganization {
        match self {
            Row::Live(org) => ListedOrganization {
                organization_id: org.id.to_hex(),
                organization_name: org.name.clone(),
                state: ListedState::of_org(org.state),
                created_at: rfc3339(org.created_at),
                deleted_at: None,
                purge_after: None,
            },
            Row::Deleted(record) => ListedOrganization {
                organization_id: record.organization_id.to_hex(),
                organization_name: record.name.clone(),
                state: ListedState::of_record(record.state),
                created_at: rfc3339(record.created_at),
                deleted_at: Some(rfc3339(record.deleted_at)),
                purge_after: Some(rfc3339(record.purge_after)),
            },
        }
    }
}

/// The upper bound of names starting with `prefix`: no stored name holds
/// `char::MAX`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

/// The filter of one source's rows of `query` after `after`; none when the
/// source holds no row in the state asked for.
fn filter(query: &ListQuery, after: Option<&ListCursor>, source: Source) -> Option<Document> {
    let mut clauses: Vec<Document> = Vec::new();
    if let Some(state) = query.state {
        let stored = match source {
            Source::Live => state.org_state().map(OrgState::as_str),
            Source::Deleted => state.record_state().map(DeletedState::as_str),
        };
        clauses.push(doc! { "state": stored? });
    }
    if let Some(prefix) = &query.prefix {
        clauses.push(doc! { "name": { "$gte": prefix.as_str(), "$lt": prefix_end(prefix) } });
    }
    if let Some(after) = after {
        // Names of live organizations are unique, so a live row with the
        // cursor's name is the cursor's own or sorts before it.
        clauses.push(match (source, after.source) {
            (Source::Live, _) => doc! { "name": { "$gt": after.name.as_str() } },
            (Source::Deleted, Source::Live) => doc! { "name": { "$gte": after.name.as_str() } },
            // The bound on `name` is the index's range; the `$or` only sorts
            // out the records that share the cursor's name.
            (Source::Deleted, Source::Deleted) => doc! {
                "name": { "$gte": after.name.as_str() },
                "$or": [
                    { "name": { "$gt": after.name.as_str() } },
                    { "_id": { "$gt": after.id } },
                ],
            },
        });
    }
    Some(match clauses.len() {
        0 => Document::new(),
        1 => clauses.remove(0),
        _ => doc! { "$and": clauses },
    })
}

fn sort(source: Source) -> Document {
    match source {
        Source::Live => doc! { "name": 1 },
        Source::Deleted => doc! { "name": 1, "_id": 1 },
    }
}

/// The index that holds each source in key order: a page reads its rows
/// in order and stops, whatever other index a filter could also use.
fn order_index(source: Source) -> &'static str {
    match source {
        Source::Live => "name_unique",
        Source::Deleted => "name_id",
    }
}

impl Store {
    /// Up to `limit` organizations of `query` in name order, and the cursor
    /// after the last when more follow.
    pub async fn list_organizations(
        &self,
        query: &ListQuery,
        limit: u32,
    ) -> Result<ListPage, ApiError> {
        self.ensure_unique_indexes().await?;
        self.ensure_deleted_indexes().await?;
        let limit = limit as usize;
        let mut rows: Vec<Row> = Vec::new();
        let mut after = query.after.clone();
        // One more row than the page, to know whether another page follows.
        // Rows hidden by their document are made up by reading on.
        while rows.len() <= limit {
            let want = limit + 1 - rows.len();
            let (live, deleted) = futures_util::try_join!(
                self.read(query, after.as_ref(), Source::Live, want),
                self.read(query, after.as_ref(), Source::Deleted, want),
            )?;
            let exhausted = live.len() < want && deleted.len() < want;
            let batch = merge(live, deleted, want);
            let Some(last) = batch.last().map(Row::key) else {
                break;
            };
            let shown = self.with_documents(batch.iter()).await?;
            rows.extend(
                batch
                    .into_iter()
                    .filter(|row| row.shadowed_by().is_none_or(|id| !shown.contains(&id))),
            );
            if exhausted {
                break;
            }
            after = Some(last);
        }
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(Row::key)
        } else {
            None
        };
        Ok(ListPage {
            organizations: rows.iter().map(Row::listed).collect(),
            next,
        })
    }

    /// Up to `want` rows of one source, in key order.
    async fn read(
        &self,
        query: &ListQuery,
        after: Option<&ListCursor>,
        source: Source,
        want: usize,
    ) -> Result<Vec<Row>, ApiError> {
        let Some(filter) = filter(query, after, source) else {
            return Ok(Vec::new());
        };
        Ok(match source {
            Source::Live => read_in_order(&self.orgs, filter, source, want)
                .await?
                .into_iter()
                .map(Row::Live)
                .collect(),
            Source::Deleted => read_in_order(&self.deleted, filter, source, want)
                .await?
                .into_iter()
                .map(Row::Deleted)
                .collect(),
        })
    }

    /// Which of the organizations that `rows`' in-progress records belong
    /// to still have their document (one query, none when no such record).
    async fn with_documents<'a>(
        &self,
        rows: impl Iterator<Item = &'a Row>,
    ) -> Result<HashSet<ObjectId>, ApiError> {
        let ids: Vec<ObjectId> = rows.filter_map(Row::shadowed_by).collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let mut found = self
            .orgs
            .clone_with_type::<Document>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db_error)?;
        let mut shown = HashSet::new();
        while found.advance().await.map_err(db_error)? {
            if let Ok(id) = found.current().get_object_id("_id") {
                shown.insert(id);
            }
        }
        Ok(shown)
    }

    /// The server's plans for a listing page's two reads (live, deleted;
    /// none for a source that holds no row in the state asked for) and what
    /// running them examined, for the test and the benchmark that show they
    /// go through an index.
    pub async fn explain_listing(
        &self,
        query: &ListQuery,
        limit: u32,
    ) -> Result<(Option<Document>, Option<Document>), ApiError> {
        self.ensure_unique_indexes().await?;
        self.ensure_deleted_indexes().await?;
        let explain = |collection: &'static str, source: Source| async move {
            let Some(filter) = filter(query, query.after.as_ref(), source) else {
                return Ok(None);
            };
            self.master
                .run_command(doc! {
                    "explain": {
                        "find": collection,
                        "filter": filter,
                        "sort": sort(source),
                        "hint": order_index(source),
                        "limit": i64::from(limit) + 1,
                    },
                    "verbosity": "executionStats",
                })
                .await
                .map(Some)
                .map_err(db_error)
        };
        Ok((
            explain(super::ORGANIZATIONS, Source::Live).await?,
            explain(super::DELETED_ORGANIZATIONS, Source::Deleted).await?,
        ))
    }
}

/// Up to `want` documents of `collection` that match `filter`, in
/// `source`'s key order, through the index that holds that order.
async fn read_in_order<T>(
    collection: &Collection<T>,
    filter: Document,
    source: Source,
    want: usize,
) -> Result<Vec<T>, ApiError>
where
    T: DeserializeOwned + Send + Sync,
{
    let mut found = collection
        .find(filter)
        .sort(sort(source))
        .hint(Hint::Name(order_index(source).to_owned()))
        .limit(want as i64)
        .await
        .map_err(db_error)?;
    let mut docs = Vec::with_capacity(want);
    while found.advance().await.map_err(db_error)? {
        docs.push(found.deserialize_current().map_err(db_error)?);
    }
    Ok(docs)
}

/// The first `want` rows of two sorted runs, in key order.
fn merge(live: Vec<Row>, deleted: Vec<Row>, want: usize) -> Vec<Row> {
    let mut merged = Vec::with_capacity(want);
    let mut live = live.into_iter().peekable();
    let mut deleted = deleted.into_iter().peekable();
    while merged.len() < want {
        let take_live = match (live.peek(), deleted.peek()) {
            (Some(l), Some(d)) => l.sort_key() < d.sort_key(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_live {
            live.next()
        } else {
            deleted.next()
        };
        merged.extend(next);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let c = ListCursor {
            name: "acme-1".into(),
            source: Source::Deleted,
            id: ObjectId::new(),
        };
        assert_eq!(ListCursor::parse(&c.encode()), Some(c.clone()));
        let good = c.encode();
        let long = format!("{}{}", &good[..27], "61".repeat(256));
        for bad in [
            "",
            "l1",
            &good[1..],
            &good[..good.len() - 1],
            &good.replacen("l1", "a1", 1),
            &good.replacen("l11", "l12", 1),
            &format!("{good}zz"),
            &long,
            &format!("{}ff", &good[..27]),
        ] {
            assert_eq!(ListCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_state_parses_and_belongs_to_a_source() {
        for s in ListedState::ALL {
            assert_eq!(ListedState::parse(s.as_str()), Some(s));
            assert!(s.org_state().is_some() || s.record_state().is_some());
        }
        assert_eq!(ListedState::parse("Active"), None);
        assert_eq!(ListedState::Deleted.org_state(), None);
        assert_eq!(ListedState::Active.record_state(), None);
    }

    #[test]
    fn live_rows_sort_before_deleted_ones_of_the_same_name() {
        let id = ObjectId::new();
        let live = ListCursor {
            name: "b".into(),
            source: Source::Live,
            id,
        };
        let deleted = ListCursor {
            name: "b".into(),
            source: Source::Deleted,
            id: ObjectId::from_bytes([0; 12]),
        };
        let earlier = ListCursor {
            name: "a".into(),
            source: Source::Deleted,
            id,
        };
        assert!(earlier < live && live < deleted);
    }
}
