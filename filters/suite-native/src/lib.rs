//! weft's suite as a native Envoy dynamic module (`libweft_suite.so`, issue #21 part 2).
//!
//! The same stages and host-free cores as `suite.wasm` (`weft_suite_stages`), behind
//! `weft-native-glue`, which holds the dynamic-module ABI bindings, the event hooks Envoy
//! resolves by name and the stages' `Host` over them. This crate only links that glue into
//! one shared object, so the hooks are exported from it; it has no code of its own.
#![forbid(unsafe_code)]

pub use weft_native_glue::ABI_VERSION;
