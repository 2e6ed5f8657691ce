//! The `log` backend: `[seconds.micros] service LEVEL: message` on the
//! console, straight through without allocating, so it works from anywhere.

use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let us = hal::clock::Instant::now().as_nanos() / 1000;
        hal::console::print(format_args!(
            "[{:5}.{:06}] {} {}: {}\n",
            us / 1_000_000,
            us % 1_000_000,
            crate::service_name(),
            record.level(),
            record.args()
        ));
        crate::bus::log(record.level(), record.target(), record.args());
    }

    fn flush(&self) {}
}

/// Installs the logger at the level named by `log=` on the command line
/// (`error`, `warn`, `info`, `debug`, `trace`, `off`; default `info`).
pub(crate) fn init(level: Option<&str>) {
    let filter = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    // set_logger fails only if a logger is already set, i.e. on re-entry.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
    if let Some(bad) = level.filter(|l| l.parse::<LevelFilter>().is_err()) {
        log::warn!("unknown log level {bad:?}; using info");
    }
}
