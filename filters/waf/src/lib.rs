//! The standalone `waf.wasm`: one root context per configuration, one HTTP context per
//! request, both thin around [`WafStage`].
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_filter_core::waf::Waf;
use weft_proxy_glue::{self as glue, HostRequest};
use weft_waf_stage::{WafRequest, WafStage};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(WafRoot::default()) });
}}

#[derive(Default)]
struct WafRoot {
    stage: Option<Rc<WafStage>>,
}

impl Context for WafRoot {}

impl RootContext for WafRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(waf) = glue::load_plugin_config("waf", Waf::from_json) else {
            return false;
        };
        self.stage = Some(Rc::new(WafStage::new(waf, &HostRequest)));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(WafHttp {
            stage,
            request: WafRequest::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct WafHttp {
    stage: Rc<WafStage>,
    request: WafRequest,
}

impl Context for WafHttp {}

impl HttpContext for WafHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        glue::action(
            self.stage
                .on_request_headers(&mut self.request, &HostRequest, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::action(self.stage.on_request_body(
            &mut self.request,
            &HostRequest,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        glue::action(
            self.stage
                .on_request_trailers(&mut self.request, &HostRequest),
        )
    }
}
