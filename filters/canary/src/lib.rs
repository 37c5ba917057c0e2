//! The standalone `canary.wasm`: thin root and HTTP contexts around [`CanaryStage`].
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_canary_stage::{CanaryRequest, CanaryStage};
use weft_filter_core::canary::Canary;
use weft_filter_core::registry::Filter;
use weft_filter_core::suite::MemoRequest;
use weft_proxy_glue::{self as glue, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(CanaryRoot { context_id, stage: None })
    });
}}

struct CanaryRoot {
    context_id: u32,
    stage: Option<Rc<CanaryStage>>,
}

impl Context for CanaryRoot {}

impl RootContext for CanaryRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(canary) = glue::load_plugin_config(Filter::Canary.module(), Canary::from_json)
        else {
            return false;
        };
        self.stage = Some(Rc::new(CanaryStage::new(
            canary,
            self.context_id,
            &HostRequest,
        )));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(CanaryHttp {
            stage,
            state: CanaryRequest::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CanaryHttp {
    stage: Rc<CanaryStage>,
    state: CanaryRequest,
}

impl Context for CanaryHttp {}

impl HttpContext for CanaryHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let req = MemoRequest::new(HostRequest);
        self.stage
            .on_request_headers(&mut self.state, &req, end_of_stream);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stage
            .on_request_body(&HostRequest, &mut self.state, body_size, end_of_stream);
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        self.stage
            .on_request_trailers(&HostRequest, &mut self.state);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some((header, version)) = self.state.take_response_header() {
            self.set_http_response_header(&header, Some(&version));
        }
        Action::Continue
    }
}
