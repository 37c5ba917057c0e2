//! The one place weft talks to Envoy's dynamic-module ABI (Envoy 1.40,
//! `envoy.filters.http.dynamic_modules`): our own bindings (`abi`, facts from Envoy's
//! `abi.h` checked against the release binary's exports), safe wrappers over them, the
//! stages' `Host` over those wrappers, and the event hooks that run the suite's pipeline.
//!
//! The stages and host-free cores are the ones `suite.wasm` runs, unchanged. What differs is
//! only what the host is: shared data is process memory (`shared`); the root's tick is a
//! timer thread posting through the ABI's scheduler (`timer`); metrics are the ABI's,
//! defined when the configuration is created; properties come from its attributes, headers
//! and filter state.
//!
//! `unsafe` is confined to this crate (FFI), each block with a `SAFETY` comment; the
//! `libweft_suite.so` crate (`filters/suite-native`) forbids it.

mod abi;
mod envoy;
mod hash;
mod hooks;
mod host;
mod logger;
mod shared;
#[cfg(test)]
mod tests;
mod timer;

pub use hooks::ABI_VERSION;
