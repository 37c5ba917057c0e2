//! The standalone `fault.wasm`: thin root and HTTP contexts around [`FaultStage`]; a held
//! request is simply resumed when due.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_fault_stage::FaultStage;
use weft_filter_core::fault::Fault;
use weft_filter_core::registry::Filter;
use weft_filter_core::suite::MemoRequest;
use weft_proxy_glue::{self as glue, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(FaultRoot { context_id, stage: None })
    });
}}

type Stage = FaultStage<()>;

struct FaultRoot {
    context_id: u32,
    stage: Option<Rc<Stage>>,
}

impl Context for FaultRoot {}

impl RootContext for FaultRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(fault) = glue::load_plugin_config(Filter::Fault.module(), Fault::from_json) else {
            return false;
        };
        // Envoy makes a new root context per configuration, so this is a safety net: never
        // strand requests held under a configuration this root is about to forget.
        if let Some(previous) = self.stage.take() {
            previous.release(&HostRequest, u64::MAX, |id, ()| {
                weft_fault_stage::resume(&HostRequest, id)
            });
        }
        self.stage = Some(Rc::new(FaultStage::new(
            fault,
            self.context_id,
            &HostRequest,
        )));
        true
    }

    fn on_tick(&mut self) {
        if let Some(stage) = &self.stage {
            stage.release(&HostRequest, glue::now_millis(), |id, ()| {
                weft_fault_stage::resume(&HostRequest, id)
            });
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(FaultHttp { context_id, stage }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FaultHttp {
    context_id: u32,
    stage: Rc<Stage>,
}

impl Context for FaultHttp {
    fn on_done(&mut self) -> bool {
        self.stage.on_done(&HostRequest, self.context_id);
        true
    }
}

impl HttpContext for FaultHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let req = MemoRequest::new(HostRequest);
        glue::action(self.stage.on_request_headers(self.context_id, &req, || ()))
    }
}
