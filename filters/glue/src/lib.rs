//! The one place weft talks to the proxy-wasm ABI.
//!
//! Filters are thin: they read what the host-free core needs through [`HostRequest`],
//! call the core, and act on the answer with the helpers here (local replies, stats,
//! configuration loading); [`HostRequest`] implements the core's `Host` trait, through which
//! the stages act (shared-data CAS is `weft_filter_core::host::shared`, over that trait).
//! Host status codes become `Option`/`Result`/`HostError` here so the filters never unwrap.
#![forbid(unsafe_code)]

mod config;
mod counters;
mod headers;
mod host;
mod http_call;
mod report;

pub use config::load_plugin_config;
pub use counters::{flush_counters, request_began, request_ended};
pub use host::{now_millis, HostRequest};
pub use report::{root_done, set_root_tick};

use proxy_wasm::types::{Action, LogLevel};
use weft_filter_core::host::Flow;

/// A stage's [`Flow`] as the ABI's `Action`.
pub fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// Install the logger (and with it the panic hook that logs at critical) once per VM.
///
/// Starts at `info`; [`sync_log_level`] then follows Envoy's own level. Below the level,
/// `log::debug!` costs one comparison: no formatting, no hostcall.
pub fn init_logging() {
    proxy_wasm::set_log_level(LogLevel::Info);
}

/// Follow Envoy's log level (`-l`, or the admin `/logging` at the next configuration).
/// Called from [`load_plugin_config`], i.e. in every `on_configure`.
pub fn sync_log_level() {
    if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}
