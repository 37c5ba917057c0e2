//! The empty filter of weft's benchmark (`scripts/bench`): a root context that hands every
//! request an HTTP context whose callbacks all return the default `Continue`. Its cost over
//! router-only is the price of one Rust proxy-wasm filter crossing, nothing else.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
}}

struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EmptyHttp;

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {}
