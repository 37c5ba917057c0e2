//! The standalone `breaker.wasm`: thin root and HTTP contexts around [`BreakerStage`].
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_breaker_stage::{BreakerStage, Gate, Slot, GAUGE_REFRESH};
use weft_filter_core::breaker::Breaker;
use weft_filter_core::registry::Filter;
use weft_filter_core::suite::MemoRequest;
use weft_proxy_glue::{self as glue, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(BreakerRoot { context_id, stage: None })
    });
}}

struct BreakerRoot {
    context_id: u32,
    stage: Option<Rc<BreakerStage>>,
}

impl Context for BreakerRoot {}

impl RootContext for BreakerRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(breaker) = glue::load_plugin_config(Filter::Breaker.module(), Breaker::from_json)
        else {
            return false;
        };
        self.stage = Some(Rc::new(BreakerStage::new(
            breaker,
            self.context_id,
            &HostRequest,
        )));
        self.set_tick_period(GAUGE_REFRESH);
        true
    }

    fn on_tick(&mut self) {
        if let Some(stage) = &self.stage {
            stage.refresh_gauges(&HostRequest);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(BreakerHttp {
            stage,
            admitted: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct BreakerHttp {
    stage: Rc<BreakerStage>,
    /// Set when this request took an in-flight slot.
    admitted: Option<Slot>,
}

impl Context for BreakerHttp {}

impl HttpContext for BreakerHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match self
            .stage
            .on_request_headers(&MemoRequest::new(HostRequest))
        {
            Gate::Unguarded => Action::Continue,
            Gate::Admitted(slot) => {
                self.admitted = Some(slot);
                Action::Continue
            }
            Gate::Rejected => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        if let Some(slot) = self.admitted.take() {
            self.stage.on_log(&HostRequest, slot);
        }
    }
}
