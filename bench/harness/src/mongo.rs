//! The harness's own MongoDB connection (straight to the server, not through
//! the proxy): filling tenant collections, and the original service's
//! `$out`-copy-then-drop rename for comparison.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, Database, IndexModel};

pub struct Mongo {
    rt: tokio::runtime::Runtime,
    client: Client,
}

type Result<T> = std::result::Result<T, String>;

fn err(e: mongodb::error::Error) -> String {
    e.to_string()
}

/// A new client at `uri` that has answered one `ping`.
async fn connected(uri: &str) -> Result<Client> {
    let client = Client::with_uri_str(uri).await.map_err(err)?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(err)?;
    Ok(client)
}

impl Mongo {
    pub fn connect(uri: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = rt.block_on(connected(uri))?;
        Ok(Self { rt, client })
    }

    /// A new client's first round trip (`ping`), connection set-up
    /// included: what a cold function pays before its first query.
    pub fn fresh_ping(&self, uri: &str) -> Result<Duration> {
        self.rt.block_on(async {
            let started = Instant::now();
            let client = connected(uri).await?;
            let elapsed = started.elapsed();
            client.shutdown().await;
            Ok(elapsed)
        })
    }

    fn db(&self, name: &str) -> Database {
        self.client.database(name)
    }

    /// Adds a unique index on `k` to `collection` (before any document is in
    /// it: building one over a large existing collection is what the local
    /// server is slow at), then `n` small documents in batches.
    pub fn fill(&self, db: &str, collection: &str, n: u64) -> Result<Duration> {
        let started = Instant::now();
        let coll = self.db(db).collection::<Document>(collection);
        self.rt.block_on(async {
            coll.create_index(
                IndexModel::builder()
                    .keys(doc! { "k": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name("k_unique".to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(err)?;
            let mut i = 0u64;
            while i < n {
                let end = (i + 10_000).min(n);
                let batch: Vec<Document> = (i..end)
                    .map(|k| {
                        doc! {
                            "k": k as i64,
                            "name": format!("item-{k:08}"),
                            "qty": (k % 100) as i32,
                            "tags": ["alpha", "beta"],
                        }
                    })
                    .collect();
                coll.insert_many(batch).ordered(false).await.map_err(err)?;
                i = end;
            }
            Ok::<_, String>(())
        })?;
        Ok(started.elapsed())
    }

    pub fn count(&self, db: &str, collection: &str) -> Result<u64> {
        self.rt
            .block_on(
                self.db(db)
                    .collection::<Document>(collection)
                    .count_documents(doc! {})
                    .into_future(),
            )
            .map_err(err)
    }

    /// The server's `renameCollection` alone, as the service issues it.
    pub fn rename_collection(&self, db: &str, from: &str, to: &str) -> Result<Duration> {
        let started = Instant::now();
        self.rt
            .block_on(
                self.client
                    .database("admin")
                    .run_command(doc! {
                        "renameCollection": format!("{db}.{from}"),
                        "to": format!("{db}.{to}"),
                        "dropTarget": false,
                    })
                    .into_future(),
            )
            .map_err(err)?;
        Ok(started.elapsed())
    }

    /// The original service's rename: copy with `$out`, then drop the old
    /// collection. Returns the time of each step.
    pub fn out_then_drop(&self, db: &str, from: &str, to: &str) -> Result<(Duration, Duration)> {
        let coll = self.db(db).collection::<Document>(from);
        let started = Instant::now();
        self.rt.block_on(async {
            let mut cursor = coll
                .aggregate([doc! { "$match": {} }, doc! { "$out": to }])
                .await
                .map_err(err)?;
            // `$out` returns no documents; draining the cursor finishes it.
            use futures_util::StreamExt;
            while let Some(d) = cursor.next().await {
                d.map_err(err)?;
            }
            Ok::<_, String>(())
        })?;
        let copied = started.elapsed();
        let started = Instant::now();
        self.rt.block_on(coll.drop().into_future()).map_err(err)?;
        Ok((copied, started.elapsed()))
    }

    pub fn drop_collection(&self, db: &str, collection: &str) -> Result<()> {
        self.rt
            .block_on(
                self.db(db)
                    .collection::<Document>(collection)
                    .drop()
                    .into_future(),
            )
            .map_err(err)
    }

    pub fn drop_database(&self, db: &str) -> Result<()> {
        self.rt
            .block_on(self.db(db).drop().into_future())
            .map_err(err)
    }
}
