//! `Idempotency-Key` records: the first request with a key runs, a repeat
//! of the same request replays its answer, another request with the key is
//! refused.

use std::time::Duration;

use mongodb::bson::{doc, DateTime};

use super::{db_error, is_duplicate_key, later, Store};
use crate::error::ApiError;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

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

impl Store {
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
}
