//! The PostgreSQL schema and its migrations. Metrics and logs are
//! partitioned by day of receipt (see [`super::partitions`]); every other
//! table is plain. Replicas starting together migrate one at a time.

use tokio_postgres::Client;

use crate::store::StoreError;

/// Advisory lock taken while migrating (any constant shared by replicas).
const MIGRATE_LOCK: i64 = 0x4556_455f_4d49_4752;

/// Schema migrations, applied in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE onboard (
    id BIGSERIAL PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    cert_hash TEXT NOT NULL UNIQUE,
    serials JSONB NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE devices (
    uuid TEXT PRIMARY KEY,
    device_cert_pem TEXT NOT NULL,
    device_cert_hash TEXT NOT NULL UNIQUE,
    onboard_cert_hash TEXT NOT NULL,
    serial TEXT NOT NULL,
    registered BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    attest_state TEXT NOT NULL,
    nonce BYTEA,
    integrity_token BYTEA,
    attest_cert_pem TEXT,
    storage_keys BYTEA,
    UNIQUE (onboard_cert_hash, serial)
);
CREATE INDEX devices_cert_prefix ON devices (left(device_cert_hash, 32));
CREATE INDEX devices_registered ON devices (registered, uuid);
CREATE TABLE configs (
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    config BYTEA NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (device, version)
);
CREATE TABLE info_latest (
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    id BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    msg BYTEA NOT NULL,
    PRIMARY KEY (device, key)
);
CREATE TABLE info_history (
    id BIGSERIAL PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    msg BYTEA NOT NULL
);
CREATE INDEX info_history_device ON info_history (device, key, received_ms);
CREATE TABLE metrics (
    id BIGSERIAL,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    received_ms BIGINT NOT NULL,
    msg BYTEA NOT NULL
) PARTITION BY RANGE (received_ms);
CREATE INDEX metrics_device ON metrics (device, received_ms);
-- Retention deletes, every minute, the rows that just expired.
CREATE INDEX metrics_received ON metrics (received_ms);
CREATE TABLE logs (
    id BIGSERIAL,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    app TEXT,
    ts_ms BIGINT NOT NULL,
    severity TEXT NOT NULL,
    source TEXT NOT NULL,
    content TEXT NOT NULL,
    received_ms BIGINT NOT NULL
) PARTITION BY RANGE (received_ms);
CREATE INDEX logs_device ON logs (device, id);
CREATE INDEX logs_device_time ON logs (device, ts_ms);
CREATE INDEX logs_app ON logs (device, app, ts_ms);
CREATE INDEX logs_received ON logs (received_ms);
CREATE TABLE flowlogs (
    id BIGSERIAL PRIMARY KEY,
    device TEXT NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
    received_ms BIGINT NOT NULL,
    msg BYTEA NOT NULL
);
CREATE INDEX flowlogs_device ON flowlogs (device, received_ms);
"#,
    r#"
ALTER TABLE devices ADD COLUMN ecdh_cert_pem TEXT;
"#,
    r#"
ALTER TABLE devices ADD COLUMN nonce_issued BIGINT;
ALTER TABLE devices ADD COLUMN pcr_policy TEXT;
"#,
];

/// Brings the schema up to date, one replica at a time.
pub async fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StoreError::TooNew {
            found: current,
            supported,
        });
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&supported],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
