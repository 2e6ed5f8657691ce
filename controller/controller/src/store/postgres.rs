//! The server store: PostgreSQL, shared by any number of controller
//! replicas (`controller --database postgres://...`).
//!
//! Every call is one transaction on a pooled connection (see [`pool`]).
//! What replicas could race on is decided by the database: registration by
//! the unique device certificate and (onboarding certificate, serial)
//! constraints, attestation by a row lock around read-change-write, config
//! versions by a lock on the device's row. Writes that make
//! a replica's cache stale notify the others ([`listen`]). Metrics and logs
//! are partitioned by day ([`partitions`]).

mod listen;
mod partitions;
mod pool;
mod schema;

use tokio_postgres::{Config, Row};

use self::listen::{CHANNEL, payload};
use self::partitions::Partitions;
use self::pool::Db;
use super::{
    AttestState, ChangeSink, Device, LogQuery, LogRecord, OnboardEntry, Pruned, Record,
    RegisterOutcome, Store, StoreError, StoredConfig,
};

/// Attempts at an attestation change before giving up on a busy device.
const ATTEST_ATTEMPTS: usize = 20;

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    db: Db,
    partitions: Partitions,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// with at most `pool_size` connections and migrates the schema.
    pub fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("--database {url:?}: {e}")))?;
        let db = Db::new(config, pool_size)?;
        db.run(|c| Box::pin(schema::migrate(c)))?;
        Ok(Self {
            db,
            partitions: Partitions::default(),
        })
    }
}

const DEVICE_COLUMNS: &str = "uuid, device_cert_pem, device_cert_hash, onboard_cert_hash, serial, \
     registered, last_seen, attest_state, nonce, integrity_token, attest_cert_pem, storage_keys, \
     ecdh_cert_pem, nonce_issued, pcr_policy";

fn device_row(r: &Row) -> Device {
    Device {
        uuid: r.get(0),
        device_cert_pem: r.get(1),
        device_cert_hash: r.get(2),
        onboard_cert_hash: r.get(3),
        serial: r.get(4),
        registered: r.get(5),
        last_seen: r.get(6),
        attest: AttestState {
            state: r.get(7),
            nonce: r.get(8),
            integrity_token: r.get(9),
            attest_cert_pem: r.get(10),
            storage_keys: r.get(11),
            ecdh_cert_pem: r.get(12),
            nonce_issued: r.get(13),
            pcr_policy: r.get(14),
        },
    }
}

const ONBOARD_COLUMNS: &str = "id, cert_pem, cert_hash, serials::text, created";

fn onboard_row(r: &Row) -> Result<OnboardEntry, StoreError> {
    let serials: String = r.get(3);
    Ok(OnboardEntry {
        id: r.get(0),
        cert_pem: r.get(1),
        cert_hash: r.get(2),
        // A damaged list must not read as "empty", which means any serial.
        serials: serde_json::from_str(&serials)
            .map_err(|e| StoreError::Corrupt(format!("onboard serials: {e}")))?,
        created: r.get(4),
    })
}

/// A batch of log lines as one array per column, for `unnest`.
#[derive(Default)]
struct LogColumns {
    device: Vec<String>,
    app: Vec<Option<String>>,
    ts_ms: Vec<i64>,
    severity: Vec<String>,
    source: Vec<String>,
    content: Vec<String>,
}

fn record_row(r: &Row) -> Record {
    Record {
        id: r.get(0),
        key: r.get(1),
        received_ms: r.get(2),
        msg: r.get(3),
    }
}

async fn notify(
    c: &impl tokio_postgres::GenericClient,
    kind: &str,
    uuid: &str,
) -> Result<(), StoreError> {
    c.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &payload(kind, uuid)],
    )
    .await?;
    Ok(())
}

async fn write_attest(
    c: &impl tokio_postgres::GenericClient,
    uuid: &str,
    s: &AttestState,
) -> Result<u64, StoreError> {
    let n = c
        .execute(
            "UPDATE devices SET attest_state = $2, nonce = $3, integrity_token = $4,
             attest_cert_pem = $5, storage_keys = $6, ecdh_cert_pem = $7, nonce_issued = $8,
             pcr_policy = $9 WHERE uuid = $1",
            &[
                &uuid,
                &s.state,
                &s.nonce,
                &s.integrity_token,
                &s.attest_cert_pem,
                &s.storage_keys,
                &s.ecdh_cert_pem,
                &s.nonce_issued,
                &s.pcr_policy,
            ],
        )
        .await?;
    if n > 0 {
        notify(c, "attest", uuid).await?;
    }
    Ok(n)
}

impl Store for PgStore {
    fn onboard_add(
        &self,
        cert_pem: &str,
        cert_hash: &str,
        serials: &[String],
    ) -> Result<i64, StoreError> {
        let serials = serde_json::to_string(serials).expect("a list of strings serializes");
        let (pem, hash) = (cert_pem.to_owned(), cert_hash.to_owned());
        self.db.run(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "INSERT INTO onboard (cert_pem, cert_hash, serials, created)
                         VALUES ($1, $2, $3::text::jsonb, $4)
                         ON CONFLICT (cert_hash) DO UPDATE SET serials = excluded.serials
                         RETURNING id",
                        &[&pem, &hash, &serials, &now_secs()],
                    )
                    .await?;
                Ok(row.get(0))
            })
        })
    }

    fn onboard_list(&self) -> Result<Vec<OnboardEntry>, StoreError> {
        self.db.run(|c| {
            Box::pin(async move {
                let sql = format!("SELECT {ONBOARD_COLUMNS} FROM onboard ORDER BY id");
                c.query(&sql, &[]).await?.iter().map(onboard_row).collect()
            })
        })
    }

    fn onboard_find(&self, cert_hash: &str) -> Result<Option<OnboardEntry>, StoreError> {
        let hash = cert_hash.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {ONBOARD_COLUMNS} FROM onboard WHERE cert_hash = $1");
                c.query_opt(&sql, &[&hash])
                    .await?
                    .as_ref()
                    .map(onboard_row)
                    .transpose()
            })
        })
    }

    fn onboard_remove(&self, id: i64) -> Result<bool, StoreError> {
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.execute("DELETE FROM onboard WHERE id = $1", &[&id])
                    .await?
                    > 0)
            })
        })
    }

    fn register_device(
        &self,
        device: &Device,
        initial_config: &[u8],
    ) -> Result<RegisterOutcome, StoreError> {
        let d = device.clone();
        let initial = initial_config.to_vec();
        self.db.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // The unique constraints decide races between replicas: a
                // second insert waits for the first to commit, then skips.
                let inserted = tx
                    .execute(
                        &format!(
                            "INSERT INTO devices ({DEVICE_COLUMNS})
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                             ON CONFLICT DO NOTHING"
                        ),
                        &[
                            &d.uuid,
                            &d.device_cert_pem,
                            &d.device_cert_hash,
                            &d.onboard_cert_hash,
                            &d.serial,
                            &d.registered,
                            &d.last_seen,
                            &d.attest.state,
                            &d.attest.nonce,
                            &d.attest.integrity_token,
                            &d.attest.attest_cert_pem,
                            &d.attest.storage_keys,
                            &d.attest.ecdh_cert_pem,
                            &d.attest.nonce_issued,
                            &d.attest.pcr_policy,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    let same = tx
                        .query_opt(
                            "SELECT uuid FROM devices WHERE device_cert_hash = $1",
                            &[&d.device_cert_hash],
                        )
                        .await?;
                    return Ok(match same {
                        Some(row) => RegisterOutcome::Repeat(row.get(0)),
                        None => RegisterOutcome::Conflict,
                    });
                }
                tx.execute(
                    "INSERT INTO configs (device, version, config, created) VALUES ($1, 1, $2, $3)",
                    &[&d.uuid, &initial, &now_secs()],
                )
                .await?;
                notify(&tx, "device", &d.uuid).await?;
                tx.commit().await?;
                Ok(RegisterOutcome::Created)
            })
        })
    }

    fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.db.run(|c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY registered, uuid");
                Ok(c.query(&sql, &[]).await?.iter().map(device_row).collect())
            })
        })
    }

    fn device(&self, uuid: &str) -> Result<Option<Device>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE uuid = $1");
                Ok(c.query_opt(&sql, &[&uuid]).await?.as_ref().map(device_row))
            })
        })
    }

    fn delete_device(&self, uuid: &str) -> Result<bool, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let n = tx
                    .execute("DELETE FROM devices WHERE uuid = $1", &[&uuid])
                    .await?;
                if n > 0 {
                    notify(&tx, "deleted", &uuid).await?;
                }
                tx.commit().await?;
                Ok(n > 0)
            })
        })
    }

    fn touch_devices(&self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        let (uuids, times): (Vec<String>, Vec<i64>) = seen.iter().cloned().unzip();
        self.db.run(move |c| {
            Box::pin(async move {
                // One statement for the whole batch; `greatest` keeps the
                // newest time whichever replica writes last.
                c.execute(
                    "UPDATE devices d SET last_seen = greatest(d.last_seen, s.at)
                     FROM unnest($1::text[], $2::bigint[]) AS s(uuid, at)
                     WHERE d.uuid = s.uuid",
                    &[&uuids, &times],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn set_attest(&self, uuid: &str, state: &AttestState) -> Result<(), StoreError> {
        let (uuid, state) = (uuid.to_owned(), state.clone());
        self.db.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                write_attest(&tx, &uuid, &state).await?;
                tx.commit().await?;
                Ok(())
            })
        })
    }

    fn update_attest(
        &self,
        uuid: &str,
        change: &mut dyn FnMut(&mut AttestState) -> bool,
    ) -> Result<Option<AttestState>, StoreError> {
        // Optimistic: read, change, then write only if the row still holds
        // what was read; a replica that lost the race reads again, so a
        // nonce is never spent twice.
        for _ in 0..ATTEST_ATTEMPTS {
            let Some(stored) = self.device(uuid)?.map(|d| d.attest) else {
                return Ok(None);
            };
            let mut next = stored.clone();
            if !change(&mut next) {
                return Ok(Some(stored));
            }
            let (id, old, new) = (uuid.to_owned(), stored, next.clone());
            let written = self.db.run(move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let n = tx
                        .execute(
                            "UPDATE devices SET attest_state = $10, nonce = $11,
                                 integrity_token = $12, attest_cert_pem = $13, storage_keys = $14,
                                 ecdh_cert_pem = $15, nonce_issued = $16, pcr_policy = $17
                             WHERE uuid = $1 AND attest_state = $2
                               AND nonce IS NOT DISTINCT FROM $3
                               AND integrity_token IS NOT DISTINCT FROM $4
                               AND attest_cert_pem IS NOT DISTINCT FROM $5
                               AND storage_keys IS NOT DISTINCT FROM $6
                               AND ecdh_cert_pem IS NOT DISTINCT FROM $7
                               AND nonce_issued IS NOT DISTINCT FROM $8
                               AND pcr_policy IS NOT DISTINCT FROM $9",
                            &[
                                &id,
                                &old.state,
                                &old.nonce,
                                &old.integrity_token,
                                &old.attest_cert_pem,
                                &old.storage_keys,
                                &old.ecdh_cert_pem,
                                &old.nonce_issued,
                                &old.pcr_policy,
                                &new.state,
                                &new.nonce,
                                &new.integrity_token,
                                &new.attest_cert_pem,
                                &new.storage_keys,
                                &new.ecdh_cert_pem,
                                &new.nonce_issued,
                                &new.pcr_policy,
                            ],
                        )
                        .await?;
                    if n > 0 {
                        notify(&tx, "attest", &id).await?;
                    }
                    tx.commit().await?;
                    Ok(n > 0)
                })
            })?;
            if written {
                return Ok(Some(next));
            }
        }
        Err(StoreError::Config(format!(
            "attestation of {uuid}: {ATTEST_ATTEMPTS} writers raced"
        )))
    }

    fn device_by_cert_prefix(&self, prefix_hex: &str) -> Result<Option<Device>, StoreError> {
        let prefix = prefix_hex.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE left(device_cert_hash, 32) = $1"
                );
                Ok(c.query_opt(&sql, &[&prefix])
                    .await?
                    .as_ref()
                    .map(device_row))
            })
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn watch(&self, sink: ChangeSink) {
        listen::spawn(self.db.handle(), self.db.config().clone(), sink);
    }

    fn put_config(&self, uuid: &str, config: &[u8]) -> Result<i64, StoreError> {
        let (uuid, config) = (uuid.to_owned(), config.to_vec());
        self.db.run(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // Config writers of one device, on any replica, take turns
                // on its row, so each reads the version the last one wrote.
                tx.execute("SELECT 1 FROM devices WHERE uuid = $1 FOR UPDATE", &[&uuid])
                    .await?;
                let row = tx
                    .query_one(
                        "INSERT INTO configs (device, version, config, created)
                         SELECT $1, coalesce(max(version), 0) + 1, $2, $3
                         FROM configs WHERE device = $1
                         RETURNING version",
                        &[&uuid, &config, &now_secs()],
                    )
                    .await?;
                notify(&tx, "config", &uuid).await?;
                tx.commit().await?;
                Ok(row.get(0))
            })
        })
    }

    fn latest_config(&self, uuid: &str) -> Result<Option<StoredConfig>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.query_opt(
                    "SELECT version, config, created FROM configs WHERE device = $1
                     ORDER BY version DESC LIMIT 1",
                    &[&uuid],
                )
                .await?
                .map(|r| StoredConfig {
                    version: r.get(0),
                    config: r.get(1),
                    created: r.get(2),
                }))
            })
        })
    }

    fn config_history(&self, uuid: &str) -> Result<Vec<StoredConfig>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT version, config, created FROM configs WHERE device = $1
                     ORDER BY version DESC",
                    &[&uuid],
                )
                .await?
                .iter()
                .map(|r| StoredConfig {
                    version: r.get(0),
                    config: r.get(1),
                    created: r.get(2),
                })
                .collect())
            })
        })
    }

    fn put_info(
        &self,
        uuid: &str,
        key: &str,
        msg: &[u8],
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let (uuid, key, msg) = (uuid.to_owned(), key.to_owned(), msg.to_vec());
        self.db.run(move |c| {
            Box::pin(async move {
                // One statement: the history row and the latest pointer.
                c.execute(
                    "WITH h AS (
                         INSERT INTO info_history (device, key, received_ms, msg)
                         VALUES ($1, $2, $3, $4) RETURNING id)
                     INSERT INTO info_latest (device, key, id, received_ms, msg)
                     SELECT $1, $2, h.id, $3, $4 FROM h
                     ON CONFLICT (device, key) DO UPDATE SET id = excluded.id,
                         received_ms = excluded.received_ms, msg = excluded.msg",
                    &[&uuid, &key, &received_ms, &msg],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn latest_info(&self, uuid: &str) -> Result<Vec<Record>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT id, key, received_ms, msg FROM info_latest WHERE device = $1 ORDER BY key",
                    &[&uuid],
                )
                .await?
                .iter()
                .map(record_row)
                .collect())
            })
        })
    }

    fn put_metrics(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError> {
        let (uuid, msg) = (uuid.to_owned(), msg.to_vec());
        let partitions = self.partitions.clone();
        self.db.run(move |c| {
            Box::pin(async move {
                partitions.ensure(c, "metrics", received_ms).await?;
                c.execute(
                    "INSERT INTO metrics (device, received_ms, msg) VALUES ($1, $2, $3)",
                    &[&uuid, &received_ms, &msg],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn metrics(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT id, 'metrics', received_ms, msg FROM metrics WHERE device = $1
                     ORDER BY received_ms DESC, id DESC LIMIT $2",
                    &[&uuid, &i64::from(limit)],
                )
                .await?
                .iter()
                .map(record_row)
                .collect())
            })
        })
    }

    fn prune(&self, metrics_before_ms: i64, logs_before_ms: i64) -> Result<Pruned, StoreError> {
        let partitions = self.partitions.clone();
        self.db.run(move |c| {
            Box::pin(async move {
                let mut pruned = Pruned::default();
                for (table, before) in partitions::TABLES
                    .into_iter()
                    .zip([metrics_before_ms, logs_before_ms])
                {
                    let (rows, parts) = partitions.prune(c, table, before).await?;
                    pruned.rows += rows;
                    pruned.partitions += parts;
                }
                // Flow logs are few (one message per app interface and
                // interval) and not partitioned: kept as long as logs.
                pruned.rows += c
                    .execute(
                        "DELETE FROM flowlogs WHERE received_ms < $1",
                        &[&logs_before_ms],
                    )
                    .await?;
                Ok(pruned)
            })
        })
    }

    fn put_logs(&self, logs: &[LogRecord], received_ms: i64) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut cols = LogColumns::default();
        for l in logs {
            cols.device.push(l.device.clone());
            cols.app.push(l.app.clone());
            cols.ts_ms.push(l.ts_ms);
            cols.severity.push(l.severity.clone());
            cols.source.push(l.source.clone());
            cols.content.push(l.content.clone());
        }
        let partitions = self.partitions.clone();
        self.db.run(move |c| {
            Box::pin(async move {
                partitions.ensure(c, "logs", received_ms).await?;
                // One statement per batch, in the batch's order (ids ascend).
                c.execute(
                    "INSERT INTO logs (device, app, ts_ms, severity, source, content, received_ms)
                     SELECT d, a, t, s, src, txt, $7 FROM unnest(
                         $1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                         WITH ORDINALITY AS u(d, a, t, s, src, txt, n)
                     ORDER BY n",
                    &[
                        &cols.device,
                        &cols.app,
                        &cols.ts_ms,
                        &cols.severity,
                        &cols.source,
                        &cols.content,
                        &received_ms,
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let q = q.clone();
        self.db.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, device, app, ts_ms, severity, source, content FROM logs
                         WHERE device = $1
                           AND ($2::text IS NULL OR app = $2)
                           AND ($3::bigint IS NULL OR ts_ms >= $3)
                           AND ($4::bigint IS NULL OR ts_ms < $4)
                           AND ($5::text IS NULL OR severity = $5)
                           AND ($6::text IS NULL OR strpos(content, $6) > 0)
                           AND ($7::bigint IS NULL OR id > $7)
                         ORDER BY id LIMIT $8",
                        &[
                            &q.device,
                            &q.app,
                            &q.since_ms,
                            &q.until_ms,
                            &q.severity,
                            &q.contains,
                            &q.after_id,
                            &i64::from(q.limit),
                        ],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| LogRecord {
                        id: r.get(0),
                        device: r.get(1),
                        app: r.get(2),
                        ts_ms: r.get(3),
                        severity: r.get(4),
                        source: r.get(5),
                        content: r.get(6),
                    })
                    .collect())
            })
        })
    }

    fn size_bytes(&self) -> Result<u64, StoreError> {
        self.db.run(|c| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await?;
                Ok(row.get::<_, i64>(0) as u64)
            })
        })
    }

    fn put_flowlog(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError> {
        let (uuid, msg) = (uuid.to_owned(), msg.to_vec());
        self.db.run(move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO flowlogs (device, received_ms, msg) VALUES ($1, $2, $3)",
                    &[&uuid, &received_ms, &msg],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn flowlogs(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError> {
        let uuid = uuid.to_owned();
        self.db.run(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT id, 'flowlog', received_ms, msg FROM flowlogs WHERE device = $1
                     ORDER BY received_ms DESC, id DESC LIMIT $2",
                    &[&uuid, &i64::from(limit)],
                )
                .await?
                .iter()
                .map(record_row)
                .collect())
            })
        })
    }
}
