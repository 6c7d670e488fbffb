//! Lifecycle events out: `OrganizationCreated`, `OrganizationRenamed`,
//! `OrganizationDeleted`, published to an EventBridge bus through an outbox.
//!
//! Each operation writes its event into the `outbox` collection (keyed by the
//! operation's id, so a resumed operation writes it once) before its final
//! step, already held by the request that wrote it ([`HOLD`]): once the
//! operation has finished, that request sends it with `PutEvents` and marks it
//! published ([`publish_held`]: one `PutEvents`, one update, nothing to claim
//! or check). Whatever is left (a failed publish, a request that died) is
//! sent by [`flush`], which runs on a schedule (the create function's
//! scheduled rule): it claims entries that are due and *ready* (no
//! organization still carries the operation as pending), publishes them and
//! marks them. A failure to publish leaves an entry pending with a growing
//! back-off and never undoes the operation. Delivery is at least once:
//! consumers deduplicate on `detail.event_id`. Events carry ids, names and
//! times, never a secret.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::error::ApiError;
pub use crate::store::outbox::{OutboxEntry, CREATED, DELETED, HOLD, RENAMED};
use crate::store::Store;

/// The `source` of every event this service publishes.
pub const SOURCE: &str = "org-service";

/// How many entries one `PutEvents` sends at most (its limit is 10).
pub const BATCH: usize = 10;

/// How many batches one scheduled flush sends at most: a backlog drains at
/// up to 500 events a run, and a run (a few round trips per batch) stays
/// far inside the create function's timeout.
pub const FLUSH_ROUNDS: usize = 50;

/// The EventBridge client and the bus it publishes to.
pub struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl Publisher {
    pub fn new(sdk: &crate::aws::SdkConfig, bus: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_eventbridge::Client::new(sdk),
            bus: bus.into(),
        }
    }

    /// Sends `entries` in one `PutEvents`; per entry, whether it was accepted.
    pub async fn publish(&self, entries: &[OutboxEntry]) -> Result<Vec<bool>, PublishError> {
        let mut request = self.client.put_events();
        for e in entries {
            request = request.entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(&e.detail_type)
                    .detail(e.detail_json())
                    .build(),
            );
        }
        let out = request.send().await.map_err(|e| {
            PublishError(format!(
                "{}",
                aws_sdk_eventbridge::error::DisplayErrorContext(e)
            ))
        })?;
        let results = out.entries.unwrap_or_default();
        Ok((0..entries.len())
            .map(|i| {
                results
                    .get(i)
                    .is_some_and(|r| r.error_code.is_none() && r.event_id.is_some())
            })
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("eventbridge: {0}")]
pub struct PublishError(String);

/// Back-off after the `attempts`-th failure: 1 s doubling, at most 15 min.
pub fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1_u32 << attempts.clamp(0, 20))
        .min(Duration::from_secs(15 * 60))
}

/// What one flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub published: usize,
    pub failed: usize,
    pub not_ready: usize,
}

impl Flushed {
    fn claimed(&self) -> usize {
        self.published + self.failed + self.not_ready
    }
}

/// Publishes what is ready in the outbox, a batch at a time, until a batch
/// comes back short (nothing more is ready), publishes nothing (EventBridge
/// or the operations are not ready: back-off and the next run retry), or
/// [`FLUSH_ROUNDS`] batches have gone. Errors are logged and left for the
/// next flush; the caller's operation is never affected.
pub async fn flush(store: &Store, publisher: &Publisher) -> Result<Flushed, ApiError> {
    let mut total = Flushed::default();
    for _ in 0..FLUSH_ROUNDS {
        let round = flush_batch(store, publisher).await?;
        total.published += round.published;
        total.failed += round.failed;
        total.not_ready += round.not_ready;
        if round.claimed() < BATCH || round.published == 0 {
            break;
        }
    }
    Ok(total)
}

/// One batch of [`flush`]: claims up to [`BATCH`] entries, sends those whose
/// operation has finished, gives the others back.
async fn flush_batch(store: &Store, publisher: &Publisher) -> Result<Flushed, ApiError> {
    let claimed = store.claim_outbox(BATCH).await?;
    let mut result = Flushed::default();
    let mut ready = Vec::new();
    for entry in claimed {
        if store.operation_finished(entry.id).await? {
            ready.push(entry);
        } else {
            result.not_ready += 1;
            store
                .release_outbox(entry.id, Duration::from_secs(5), false)
                .await?;
        }
    }
    let sent = publish_held(store, publisher, &ready).await?;
    result.published = sent.published;
    result.failed = sent.failed;
    Ok(result)
}

/// Publishes entries the caller holds: those a flush has claimed, or the
/// events of operations the caller has just finished (written held, so no
/// claim and no readiness check). One `PutEvents` per [`BATCH`] entries, then
/// one update marking those accepted; each rejected one is released with its
/// back-off.
pub async fn publish_held(
    store: &Store,
    publisher: &Publisher,
    entries: &[OutboxEntry],
) -> Result<Flushed, ApiError> {
    let mut result = Flushed::default();
    let mut accepted = Vec::with_capacity(entries.len());
    for batch in entries.chunks(BATCH) {
        match publisher.publish(batch).await {
            Ok(ok) => accepted.extend(ok),
            Err(e) => {
                tracing::warn!(error = %e, pending = batch.len(), "publishing lifecycle events failed; will retry");
                accepted.extend(std::iter::repeat_n(false, batch.len()));
            }
        }
    }
    let mut published = Vec::new();
    for (entry, ok) in entries.iter().zip(accepted) {
        if ok {
            published.push(entry.id);
        } else {
            store
                .release_outbox(entry.id, backoff(entry.attempts), true)
                .await?;
            result.failed += 1;
        }
    }
    store.mark_published(&published).await?;
    result.published = published.len();
    Ok(result)
}
