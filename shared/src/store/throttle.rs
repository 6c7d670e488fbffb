//! Login throttling (per email and source, and a per-email ceiling) and the
//! per-source limit on creates, both in the `login_attempts` collection with
//! its TTL index.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::ReturnDocument;
use tracing::instrument;

use super::{db_error, later, Store};
use crate::domain::Email;
use crate::error::ApiError;

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

impl Store {
    /// Refuses a login while its email and source, or its email alone, is
    /// locked, with how long to wait; otherwise tells whether failures of
    /// the pair are on record (to clear on success).
    #[instrument(skip_all)]
    pub async fn check_login_allowed(&self, keys: &LoginKeys) -> Result<bool, ApiError> {
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
}
