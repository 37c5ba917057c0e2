//! The standalone `telemetry.wasm`: one root context per configuration (it owns the report
//! tick and the call answers), one HTTP context per request (it records in `on_log`), both
//! thin around [`TelemetryStage`].
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use weft_filter_core::registry::Filter;
use weft_filter_core::telemetry::TelemetryConfig;
use weft_proxy_glue::{self as glue, HostRequest};
use weft_telemetry_stage::TelemetryStage;

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::<TelemetryRoot>::default() });
}}

#[derive(Default)]
struct TelemetryRoot {
    stage: Option<Rc<TelemetryStage>>,
    /// `on_done` came while a report was on its way: finish on its answer.
    retiring: bool,
}

impl Context for TelemetryRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _t: usize) {
        if let Some(stage) = &self.stage {
            stage.on_http_call_response(&HostRequest, token);
            if self.retiring && !stage.reporting() {
                self.retiring = false;
                glue::root_done();
            }
        }
    }

    /// A new configuration retires this root: report what is pending now (see the suite's
    /// root), and stay until that report is answered.
    fn on_done(&mut self) -> bool {
        let Some(stage) = &self.stage else {
            return true;
        };
        self.retiring = stage.flush_final(&HostRequest);
        !self.retiring
    }
}

impl RootContext for TelemetryRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) =
            glue::load_plugin_config(Filter::Telemetry.module(), TelemetryConfig::from_json)
        else {
            return false;
        };
        let stage = TelemetryStage::new(config, &HostRequest);
        if let Some(period) = stage.flush_period() {
            glue::set_root_tick(period);
        }
        self.stage = Some(Rc::new(stage));
        true
    }

    fn on_tick(&mut self) {
        if let Some(stage) = &self.stage {
            stage.flush(&HostRequest);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stage = self.stage.clone()?;
        Some(Box::new(TelemetryHttp { stage }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TelemetryHttp {
    stage: Rc<TelemetryStage>,
}

impl Context for TelemetryHttp {}

impl HttpContext for TelemetryHttp {
    fn on_log(&mut self) {
        self.stage.on_log(&HostRequest, None);
    }
}
