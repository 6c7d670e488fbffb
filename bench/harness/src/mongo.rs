//! The harness's own MongoDB connection (straight to the server, not through
//! the proxy): filling tenant collections, organizations and an audit
//! trail, and the original service's `$out`-copy-then-drop rename for
//! comparison.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
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

    /// Runs `f` on the harness's runtime (for calls through the service's
    /// own store).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// `n` active organizations named `<prefix>-00000`, ..., as the create
    /// function leaves them (without their admins and collections, which a
    /// listing never reads), in batches.
    pub fn insert_organizations(&self, db: &str, prefix: &str, n: u64) -> Result<()> {
        let coll = self.db(db).collection::<Document>("organizations");
        let now = DateTime::now();
        self.rt.block_on(async {
            for start in (0..n).step_by(1_000) {
                let batch: Vec<Document> = (start..(start + 1_000).min(n))
                    .map(|i| {
                        let name = format!("{prefix}-{i:05}");
                        doc! {
                            "_id": ObjectId::new(),
                            "names": [&name],
                            "collection_name": format!("org_{name}"),
                            "name": name,
                            "admin_id": ObjectId::new(),
                            "created_at": now,
                            "updated_at": now,
                            "state": "active",
                        }
                    })
                    .collect();
                coll.insert_many(batch).await.map_err(err)?;
            }
            Ok(())
        })
    }

    /// The id of organization `name`.
    pub fn organization_id(&self, db: &str, name: &str) -> Result<ObjectId> {
        let coll = self.db(db).collection::<Document>("organizations");
        let found = self
            .rt
            .block_on(coll.find_one(doc! { "name": name }).into_future())
            .map_err(err)?
            .ok_or_else(|| format!("no organization {name}"))?;
        found.get_object_id("_id").map_err(|e| e.to_string())
    }

    /// `n` login entries of organization `org` in its audit trail, one a
    /// second back from now, in batches.
    pub fn insert_audit_entries(&self, db: &str, org: ObjectId, n: u64) -> Result<()> {
        let coll = self.db(db).collection::<Document>("audit");
        let now = DateTime::now().timestamp_millis();
        let expires = DateTime::from_millis(now + 400 * 86_400_000);
        self.rt.block_on(async {
            for start in (0..n).step_by(10_000) {
                let batch: Vec<Document> = (start..(start + 10_000).min(n))
                    .map(|i| {
                        doc! {
                            "_id": ObjectId::new(),
                            "organization_id": org,
                            "at": DateTime::from_millis(now - 1_000 * (i as i64 + 1)),
                            "action": "login.succeeded",
                            "actor": { "kind": "admin", "id": "000000000000000000000000" },
                            "source_ip": "192.0.2.1",
                            "request_id": format!("bench-{i}"),
                            "outcome": "succeeded",
                            "expires_at": expires,
                        }
                    })
                    .collect();
                coll.insert_many(batch).ordered(false).await.map_err(err)?;
            }
            Ok(())
        })
    }

    pub fn drop_database(&self, db: &str) -> Result<()> {
        self.rt
            .block_on(self.db(db).drop().into_future())
            .map_err(err)
    }
}
