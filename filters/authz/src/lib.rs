//! The standalone `authz.wasm`: one root context per configuration, one HTTP context per
//! request, both thin around [`AuthzStage`].
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_authz_stage::AuthzStage;
use weft_filter_core::authz::Authz;
use weft_filter_core::explain::TRACE_HEADER;
use weft_filter_core::registry::Filter;
use weft_filter_core::suite::MemoRequest;
use weft_proxy_glue::{self as glue, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthzRoot::default()) });
}}

#[derive(Default)]
struct AuthzRoot {
    stage: Option<Rc<AuthzStage>>,
}

impl Context for AuthzRoot {}

impl RootContext for AuthzRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(authz) = glue::load_plugin_config(Filter::Authz.module(), Authz::from_json) else {
            return false;
        };
        self.stage = Some(Rc::new(AuthzStage::new(authz, &HostRequest)));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(AuthzHttp { stage, trace: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthzHttp {
    stage: Rc<AuthzStage>,
    /// The explain trace for the response, when the request carried a valid token.
    trace: Option<String>,
}

impl Context for AuthzHttp {}

impl HttpContext for AuthzHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let (flow, _, trace) = self
            .stage
            .decide_explained(&MemoRequest::new(HostRequest), true);
        self.trace = trace;
        glue::action(flow)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Only weft writes the trace header: an app's own copy never reaches the caller.
        if self.stage.explains() {
            let trace = self.trace.take();
            self.set_http_response_header(TRACE_HEADER, trace.as_deref());
        }
        Action::Continue
    }
}
