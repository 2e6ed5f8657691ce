//! Daily partitions of `metrics` and `logs`, by time of receipt (the
//! controller's clock, never the device's). A partition is created the
//! first time a replica stores a row for its day; retention drops whole
//! expired partitions, then deletes the rows before the limit in the one
//! partition that straddles it, so pruning is exact.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;

use crate::store::StoreError;

/// One day in milliseconds: the partition width.
pub const DAY_MS: i64 = 86_400_000;
/// Advisory lock serialising partition DDL between replicas.
const DDL_LOCK: i64 = 0x4556_455f_5041_5254;
/// The partitioned tables.
pub const TABLES: [&str; 2] = ["metrics", "logs"];

/// The partitions this process knows exist.
#[derive(Clone, Default)]
pub struct Partitions {
    known: Arc<Mutex<HashSet<(&'static str, i64)>>>,
}

/// The day (since 1970) holding `ms`.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

fn name(table: &str, day: i64) -> String {
    // Days before 1970 cannot come from the controller's clock; the sign
    // still gets a name of its own.
    if day < 0 {
        format!("{table}_dm{}", -day)
    } else {
        format!("{table}_d{day}")
    }
}

impl Partitions {
    /// Makes sure the partition of `table` holding `ms` exists.
    pub async fn ensure(&self, c: &Client, table: &'static str, ms: i64) -> Result<(), StoreError> {
        let day = day_of(ms);
        if self.lock().contains(&(table, day)) {
            return Ok(());
        }
        c.batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({DDL_LOCK});
             CREATE TABLE IF NOT EXISTS {} PARTITION OF {table}
                 FOR VALUES FROM ({}) TO ({});
             COMMIT;",
            name(table, day),
            day * DAY_MS,
            (day + 1) * DAY_MS,
        ))
        .await?;
        self.lock().insert((table, day));
        Ok(())
    }

    /// Drops the partitions of `table` wholly before `before_ms`, then
    /// deletes the older rows of the partition straddling it. Returns
    /// (rows deleted, partitions dropped).
    pub async fn prune(
        &self,
        c: &mut Client,
        table: &'static str,
        before_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
            .await?;
        let rows = tx
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = $1::text::regclass",
                &[&table],
            )
            .await?;
        let mut dropped = 0;
        for row in rows {
            let part: String = row.get(0);
            let Some(day) = part_day(table, &part) else {
                continue;
            };
            if (day + 1) * DAY_MS <= before_ms {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {part}"))
                    .await?;
                self.lock().remove(&(table, day));
                dropped += 1;
            }
        }
        let deleted = tx
            .execute(
                &format!("DELETE FROM {table} WHERE received_ms < $1"),
                &[&before_ms],
            )
            .await?;
        tx.commit().await?;
        Ok((deleted, dropped))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(&'static str, i64)>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The day a partition of `table` covers, from its name.
fn part_day(table: &str, part: &str) -> Option<i64> {
    let suffix = part.strip_prefix(table)?.strip_prefix('_')?;
    match suffix.strip_prefix("dm") {
        Some(neg) => neg.parse::<i64>().ok().map(|d| -d),
        None => suffix.strip_prefix('d')?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        for day in [0, 1, 20_454, -3] {
            assert_eq!(part_day("logs", &name("logs", day)), Some(day));
        }
        assert_eq!(part_day("logs", "metrics_d5"), None);
        assert_eq!(part_day("logs", "logs_dx"), None);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(-1), -1);
    }
}
