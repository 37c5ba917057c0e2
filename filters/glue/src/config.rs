//! Reading the plugin configuration once per root context.

use proxy_wasm::hostcalls;
use weft_filter_core::ConfigError;

/// Read the plugin configuration and parse it with `parse`.
///
/// On failure logs exactly one line naming the filter, the field and the reason and
/// returns `None`; the caller then returns `false` from `on_configure`, so Envoy refuses
/// the configuration (fails to start, or NACKs an ECDS update keeping the last good one).
pub fn load_plugin_config<T>(
    filter: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Option<T> {
    crate::sync_log_level();
    let bytes = match hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    ) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => Vec::new(),
        Err(status) => {
            log::error!("weft-{filter}: cannot read plugin configuration: {status:?}");
            return None;
        }
    };
    // An absent configuration means "the empty object": every filter has safe defaults.
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".to_vec()
    } else {
        bytes
    };
    match parse(&bytes) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            log::error!("weft-{filter}: {err}");
            None
        }
    }
}
