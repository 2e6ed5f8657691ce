//! The embedded default store: one SQLite file in WAL mode.
//!
//! WAL lets readers run while a write commits; `synchronous=NORMAL` makes a
//! commit durable against a crash of the controller process (the WAL is in
//! the OS cache), and only an OS crash or power loss can drop the last
//! commits, never corrupt the file. One connection behind a mutex is enough
//! at our request rates because the hot path (config polls) is served from
//! memory.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AttestState, Device, LogQuery, LogRecord, OnboardEntry, Pruned, Record, RegisterOutcome, Store,
    StoreError, StoredConfig,
};

/// Schema migrations, applied in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE onboard (
    id INTEGER PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    cert_hash TEXT NOT NULL UNIQUE,
    serials TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE devices (
    uuid TEXT PRIMARY KEY,
    device_cert_pem TEXT NOT NULL,
    device_cert_hash TEXT NOT NULL UNIQUE,
    onboard_cert_hash TEXT NOT NULL,
    serial TEXT NOT NULL,
    registered INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    attest_state TEXT NOT NULL,
    nonce BLOB,
    integrity_token BLOB,
    attest_cert_pem TEXT,
    storage_keys BLOB
);
CREATE INDEX devices_onboard ON devices (onboard_cert_hash, serial);
CREATE TABLE configs (
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    config BLOB NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (device, version)
);
CREATE TABLE info_latest (
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    id INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    msg BLOB NOT NULL,
    PRIMARY KEY (device, key)
);
CREATE TABLE info_history (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    msg BLOB NOT NULL
);
CREATE INDEX info_history_device ON info_history (device, key, received_ms);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    received_ms INTEGER NOT NULL,
    msg BLOB NOT NULL
);
CREATE INDEX metrics_device ON metrics (device, received_ms);
CREATE INDEX metrics_received ON metrics (received_ms);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    app TEXT,
    ts_ms INTEGER NOT NULL,
    severity TEXT NOT NULL,
    source TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX logs_device ON logs (device, ts_ms);
CREATE INDEX logs_app ON logs (device, app, ts_ms);
CREATE TABLE flowlogs (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    received_ms INTEGER NOT NULL,
    msg BLOB NOT NULL
);
"#,
    r#"
DROP INDEX devices_onboard;
CREATE UNIQUE INDEX devices_onboard ON devices (onboard_cert_hash, serial);
CREATE INDEX devices_cert_prefix ON devices (substr(device_cert_hash, 1, 32));
ALTER TABLE logs ADD COLUMN received_ms INTEGER NOT NULL DEFAULT 0;
UPDATE logs SET received_ms = ts_ms;
CREATE INDEX logs_received ON logs (received_ms);
"#,
    r#"
ALTER TABLE devices ADD COLUMN ecdh_cert_pem TEXT;
"#,
    r#"
ALTER TABLE devices ADD COLUMN nonce_issued INTEGER;
ALTER TABLE devices ADD COLUMN pcr_policy TEXT;
"#,
];

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied
        // transaction (it rolls back on drop), so the connection is usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StoreError::TooNew {
            found: current,
            supported,
        });
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [supported],
    )?;
    tx.commit()?;
    Ok(())
}

const DEVICE_COLUMNS: &str = "uuid, device_cert_pem, device_cert_hash, onboard_cert_hash, serial, \
     registered, last_seen, attest_state, nonce, integrity_token, attest_cert_pem, storage_keys, \
     ecdh_cert_pem, nonce_issued, pcr_policy";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        uuid: r.get(0)?,
        device_cert_pem: r.get(1)?,
        device_cert_hash: r.get(2)?,
        onboard_cert_hash: r.get(3)?,
        serial: r.get(4)?,
        registered: r.get(5)?,
        last_seen: r.get(6)?,
        attest: AttestState {
            state: r.get(7)?,
            nonce: r.get(8)?,
            integrity_token: r.get(9)?,
            attest_cert_pem: r.get(10)?,
            storage_keys: r.get(11)?,
            ecdh_cert_pem: r.get(12)?,
            nonce_issued: r.get(13)?,
            pcr_policy: r.get(14)?,
        },
    })
}

const ONBOARD_COLUMNS: &str = "id, cert_pem, cert_hash, serials, created";

fn onboard_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OnboardEntry> {
    let serials: String = r.get(3)?;
    Ok(OnboardEntry {
        id: r.get(0)?,
        cert_pem: r.get(1)?,
        cert_hash: r.get(2)?,
        // A damaged list must not read as "empty", which means any serial.
        serials: serde_json::from_str(&serials).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created: r.get(4)?,
    })
}

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: r.get(0)?,
        key: r.get(1)?,
        received_ms: r.get(2)?,
        msg: r.get(3)?,
    })
}

impl Store for SqliteStore {
    fn onboard_add(
        &self,
        cert_pem: &str,
        cert_hash: &str,
        serials: &[String],
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        let serials = serde_json::to_string(serials).expect("a list of strings serializes");
        conn.execute(
            "INSERT INTO onboard (cert_pem, cert_hash, serials, created) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (cert_hash) DO UPDATE SET serials = excluded.serials",
            params![cert_pem, cert_hash, serials, now_secs()],
        )?;
        Ok(conn.query_row(
            "SELECT id FROM onboard WHERE cert_hash = ?1",
            [cert_hash],
            |r| r.get(0),
        )?)
    }

    fn onboard_list(&self) -> Result<Vec<OnboardEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ONBOARD_COLUMNS} FROM onboard ORDER BY id"
        ))?;
        let rows = stmt.query_map([], onboard_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn onboard_find(&self, cert_hash: &str) -> Result<Option<OnboardEntry>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {ONBOARD_COLUMNS} FROM onboard WHERE cert_hash = ?1"),
                [cert_hash],
                onboard_row,
            )
            .optional()?)
    }

    fn onboard_remove(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM onboard WHERE id = ?1", [id])?
            > 0)
    }

    fn register_device(
        &self,
        device: &Device,
        initial_config: &[u8],
    ) -> Result<RegisterOutcome, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let same: Option<String> = tx
            .query_row(
                "SELECT uuid FROM devices WHERE device_cert_hash = ?1",
                [&device.device_cert_hash],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(uuid) = same {
            return Ok(RegisterOutcome::Repeat(uuid));
        }
        let other: Option<String> = tx
            .query_row(
                "SELECT uuid FROM devices WHERE onboard_cert_hash = ?1 AND serial = ?2",
                [&device.onboard_cert_hash, &device.serial],
                |r| r.get(0),
            )
            .optional()?;
        if other.is_some() {
            return Ok(RegisterOutcome::Conflict);
        }
        tx.execute(
            &format!("INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                device.uuid,
                device.device_cert_pem,
                device.device_cert_hash,
                device.onboard_cert_hash,
                device.serial,
                device.registered,
                device.last_seen,
                device.attest.state,
                device.attest.nonce,
                device.attest.integrity_token,
                device.attest.attest_cert_pem,
                device.attest.storage_keys,
                device.attest.ecdh_cert_pem,
                device.attest.nonce_issued,
                device.attest.pcr_policy,
            ],
        )?;
        tx.execute(
            "INSERT INTO configs (device, version, config, created) VALUES (?1, 1, ?2, ?3)",
            params![device.uuid, initial_config, now_secs()],
        )?;
        tx.commit()?;
        Ok(RegisterOutcome::Created)
    }

    fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY registered, uuid"
        ))?;
        let rows = stmt.query_map([], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn device(&self, uuid: &str) -> Result<Option<Device>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE uuid = ?1"),
                [uuid],
                device_row,
            )
            .optional()?)
    }

    fn delete_device(&self, uuid: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM devices WHERE uuid = ?1", [uuid])?
            > 0)
    }

    fn touch_devices(&self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE devices SET last_seen = max(last_seen, ?2) WHERE uuid = ?1",
            )?;
            for (uuid, at) in seen {
                stmt.execute(params![uuid, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn set_attest(&self, uuid: &str, s: &AttestState) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE devices SET attest_state = ?2, nonce = ?3, integrity_token = ?4,
             attest_cert_pem = ?5, storage_keys = ?6, ecdh_cert_pem = ?7, nonce_issued = ?8,
             pcr_policy = ?9 WHERE uuid = ?1",
            params![
                uuid,
                s.state,
                s.nonce,
                s.integrity_token,
                s.attest_cert_pem,
                s.storage_keys,
                s.ecdh_cert_pem,
                s.nonce_issued,
                s.pcr_policy
            ],
        )?;
        Ok(())
    }

    fn update_attest(
        &self,
        uuid: &str,
        change: &mut dyn FnMut(&mut AttestState) -> bool,
    ) -> Result<Option<AttestState>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(mut state) = tx
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE uuid = ?1"),
                [uuid],
                device_row,
            )
            .optional()?
            .map(|d| d.attest)
        else {
            return Ok(None);
        };
        let stored = state.clone();
        if !change(&mut state) {
            return Ok(Some(stored));
        }
        {
            tx.execute(
                "UPDATE devices SET attest_state = ?2, nonce = ?3, integrity_token = ?4,
                 attest_cert_pem = ?5, storage_keys = ?6, ecdh_cert_pem = ?7, nonce_issued = ?8,
                 pcr_policy = ?9 WHERE uuid = ?1",
                params![
                    uuid,
                    state.state,
                    state.nonce,
                    state.integrity_token,
                    state.attest_cert_pem,
                    state.storage_keys,
                    state.ecdh_cert_pem,
                    state.nonce_issued,
                    state.pcr_policy
                ],
            )?;
        }
        tx.commit()?;
        Ok(Some(state))
    }

    fn device_by_cert_prefix(&self, prefix_hex: &str) -> Result<Option<Device>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE substr(device_cert_hash, 1, 32) = ?1"
                ),
                [prefix_hex],
                device_row,
            )
            .optional()?)
    }

    fn put_config(&self, uuid: &str, config: &[u8]) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let next: i64 = tx.query_row(
            "SELECT coalesce(max(version), 0) + 1 FROM configs WHERE device = ?1",
            [uuid],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO configs (device, version, config, created) VALUES (?1, ?2, ?3, ?4)",
            params![uuid, next, config, now_secs()],
        )?;
        tx.commit()?;
        Ok(next)
    }

    fn latest_config(&self, uuid: &str) -> Result<Option<StoredConfig>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT version, config, created FROM configs WHERE device = ?1
                 ORDER BY version DESC LIMIT 1",
                [uuid],
                |r| {
                    Ok(StoredConfig {
                        version: r.get(0)?,
                        config: r.get(1)?,
                        created: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn config_history(&self, uuid: &str) -> Result<Vec<StoredConfig>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, config, created FROM configs WHERE device = ?1 ORDER BY version DESC",
        )?;
        let rows = stmt.query_map([uuid], |r| {
            Ok(StoredConfig {
                version: r.get(0)?,
                config: r.get(1)?,
                created: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_info(
        &self,
        uuid: &str,
        key: &str,
        msg: &[u8],
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO info_history (device, key, received_ms, msg) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![uuid, key, received_ms, msg])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO info_latest (device, key, id, received_ms, msg) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (device, key) DO UPDATE SET id = excluded.id,
             received_ms = excluded.received_ms, msg = excluded.msg",
        )?
        .execute(params![uuid, key, id, received_ms, msg])?;
        tx.commit()?;
        Ok(())
    }

    fn latest_info(&self, uuid: &str) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, key, received_ms, msg FROM info_latest WHERE device = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([uuid], record_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_metrics(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("INSERT INTO metrics (device, received_ms, msg) VALUES (?1, ?2, ?3)")?
            .execute(params![uuid, received_ms, msg])?;
        Ok(())
    }

    fn metrics(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, 'metrics', received_ms, msg FROM metrics WHERE device = ?1
             ORDER BY received_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![uuid, limit], record_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn prune(&self, metrics_before_ms: i64, logs_before_ms: i64) -> Result<Pruned, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let metrics = tx.execute(
            "DELETE FROM metrics WHERE received_ms < ?1",
            [metrics_before_ms],
        )?;
        let logs = tx.execute("DELETE FROM logs WHERE received_ms < ?1", [logs_before_ms])?;
        let flows = tx.execute(
            "DELETE FROM flowlogs WHERE received_ms < ?1",
            [logs_before_ms],
        )?;
        tx.commit()?;
        Ok(Pruned {
            rows: (metrics + logs + flows) as u64,
            partitions: 0,
        })
    }

    fn put_logs(&self, logs: &[LogRecord], received_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (device, app, ts_ms, severity, source, content, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for l in logs {
                stmt.execute(params![
                    l.device,
                    l.app,
                    l.ts_ms,
                    l.severity,
                    l.source,
                    l.content,
                    received_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, device, app, ts_ms, severity, source, content FROM logs
             WHERE device = ?1
               AND (?2 IS NULL OR app = ?2)
               AND (?3 IS NULL OR ts_ms >= ?3)
               AND (?4 IS NULL OR ts_ms < ?4)
               AND (?5 IS NULL OR severity = ?5)
               AND (?6 IS NULL OR instr(content, ?6) > 0)
               AND (?7 IS NULL OR id > ?7)
             ORDER BY id LIMIT ?8",
        )?;
        let rows = stmt.query_map(
            params![
                q.device, q.app, q.since_ms, q.until_ms, q.severity, q.contains, q.after_id,
                q.limit
            ],
            |r| {
                Ok(LogRecord {
                    id: r.get(0)?,
                    device: r.get(1)?,
                    app: r.get(2)?,
                    ts_ms: r.get(3)?,
                    severity: r.get(4)?,
                    source: r.get(5)?,
                    content: r.get(6)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn size_bytes(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    fn put_flowlog(&self, uuid: &str, msg: &[u8], received_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO flowlogs (device, received_ms, msg) VALUES (?1, ?2, ?3)",
            params![uuid, received_ms, msg],
        )?;
        Ok(())
    }

    fn flowlogs(&self, uuid: &str, limit: u32) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, 'flowlog', received_ms, msg FROM flowlogs WHERE device = ?1
             ORDER BY received_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![uuid, limit], record_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared store suite on a fresh database file per case.
    #[test]
    fn passes_the_store_suite() {
        let dir = std::env::temp_dir().join(format!("ctl-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut n = 0;
        crate::store::suite::run(&mut || {
            n += 1;
            let path = dir.join(format!("case-{n}.db"));
            let reopen = path.clone();
            (
                Box::new(SqliteStore::open(&path).expect("open")) as Box<dyn Store>,
                Box::new(move || {
                    Box::new(SqliteStore::open(&reopen).expect("reopen")) as Box<dyn Store>
                }) as Box<dyn Fn() -> Box<dyn Store>>,
            )
        });
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A version-1 database (before log receive times and the unique
    /// onboarding index) opens and migrates with its rows intact.
    #[test]
    fn migrates_a_version_1_database() {
        let dir = std::env::temp_dir().join(format!("ctl-store-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("controller.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1);
                 INSERT INTO devices VALUES ('u1', 'pem', 'c1', 'onb', 's1', 1, 1, 'none',
                     NULL, NULL, NULL, NULL);
                 INSERT INTO logs (device, app, ts_ms, severity, source, content)
                     VALUES ('u1', NULL, 42, 'info', 'a', 'old line');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).expect("migrates");
        let q = LogQuery {
            device: "u1".into(),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(s.query_logs(&q).unwrap()[0].content, "old line");
        assert_eq!(s.prune(0, 43).unwrap().rows, 1);
        assert_eq!(s.device_by_cert_prefix("c1").unwrap().unwrap().uuid, "u1");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
