//! The `log` facade into Envoy's own log (`[dynamic_modules]`), at Envoy's level.

use crate::abi;
use crate::envoy;

struct EnvoyLogger;

fn level(level: log::Level) -> u32 {
    match level {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug => abi::LOG_DEBUG,
        log::Level::Trace => abi::LOG_TRACE,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        envoy::log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            envoy::log(level(record.level()), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once per process, and follows Envoy's level (`-l`, admin `/logging`)
/// at every call (each configuration): below it, a `log::debug!` costs one comparison.
pub fn init() {
    static LOGGER: EnvoyLogger = EnvoyLogger;
    let _ = log::set_logger(&LOGGER);
    let max = [
        (abi::LOG_TRACE, log::LevelFilter::Trace),
        (abi::LOG_DEBUG, log::LevelFilter::Debug),
        (abi::LOG_INFO, log::LevelFilter::Info),
        (abi::LOG_WARN, log::LevelFilter::Warn),
        (abi::LOG_ERROR, log::LevelFilter::Error),
    ]
    .into_iter()
    .find(|(level, _)| envoy::log_enabled(*level))
    .map_or(log::LevelFilter::Off, |(_, filter)| filter);
    log::set_max_level(max);
}
