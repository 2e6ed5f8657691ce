//! The shared store suite against a real PostgreSQL server (Debian's
//! `postgresql`, started here on a loopback port in a temporary directory),
//! and what only PostgreSQL has: daily partitions dropped by retention.

use controller::pgserver;
use controller::store::postgres::PgStore;
use controller::store::suite;
use controller::store::{LogQuery, LogRecord, Store};

#[test]
fn postgres_passes_the_store_suite() {
    let Some(pg) = pgserver::for_test("postgres_passes_the_store_suite") else {
        return;
    };
    let mut n = 0;
    suite::run(&mut || {
        n += 1;
        let url = pg.create_database(&format!("case{n}")).expect("database");
        let reopen = url.clone();
        (
            Box::new(PgStore::connect(&url, 8).expect("connect")) as Box<dyn Store>,
            Box::new(move || {
                Box::new(PgStore::connect(&reopen, 8).expect("reconnect")) as Box<dyn Store>
            }) as Box<dyn Fn() -> Box<dyn Store>>,
        )
    });
}

const DAY_MS: i64 = 86_400_000;

/// Rows land in one partition per day of receipt; retention drops whole
/// expired partitions and keeps the rest.
#[test]
fn retention_drops_daily_partitions() {
    let Some(pg) = pgserver::for_test("retention_drops_daily_partitions") else {
        return;
    };
    let url = pg.create_database("partitions").expect("database");
    let store = PgStore::connect(&url, 4).expect("connect");
    store
        .register_device(&suite::device("u1", "c1", "s1"), b"cfg")
        .unwrap();
    let today = 20_400 * DAY_MS;
    for day in 0..5 {
        store.put_metrics("u1", b"m", today - day * DAY_MS).unwrap();
        let line = LogRecord {
            id: 0,
            device: "u1".into(),
            app: None,
            ts_ms: 1,
            severity: "info".into(),
            source: "s".into(),
            content: format!("day {day}"),
        };
        store.put_logs(&[line], today - day * DAY_MS).unwrap();
    }
    let partitions = |table: &str| -> Vec<String> {
        let out = std::process::Command::new("psql")
            .arg(&url)
            .args(["-At", "-c"])
            .arg(format!(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = '{table}'::regclass ORDER BY 1"
            ))
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(partitions("metrics").len(), 5);
    assert_eq!(partitions("logs").len(), 5);
    // Keep two days of metrics and three of logs: the partitions wholly
    // older go (two of metrics, one of logs); the one straddling the limit
    // stays, its older rows deleted.
    let pruned = store
        .prune(today - 2 * DAY_MS + 1, today - 3 * DAY_MS + 1)
        .unwrap();
    assert_eq!((pruned.partitions, pruned.rows), (3, 2), "{pruned:?}");
    assert_eq!(
        partitions("metrics"),
        ["metrics_d20398", "metrics_d20399", "metrics_d20400"]
    );
    assert_eq!(partitions("logs").len(), 4);
    assert_eq!(store.metrics("u1", 10).unwrap().len(), 2);
    let q = LogQuery {
        device: "u1".into(),
        limit: 10,
        ..Default::default()
    };
    let days: Vec<String> = store
        .query_logs(&q)
        .unwrap()
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(days, ["day 0", "day 1", "day 2"]);
}
