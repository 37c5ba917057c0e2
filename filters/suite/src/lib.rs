//! weft suite: telemetry, authz, canary, fault and breaker in one module — one VM per worker
//! and one HTTP context per request instead of one of each per filter.
//!
//! Every wasm filter in a chain pays the host crossing again (D14); here the filters run as
//! stages of one HTTP context, in the order of the chain: telemetry, authz, canary, fault,
//! breaker. Each stage is the standalone filter's own code (`weft_authz_stage::AuthzStage`, ...),
//! configured by its own section of `{"telemetry": .., "authz": .., "canary": .., "fault": ..,
//! "breaker": ..}` (`weft_filter_core::suite`); an absent section turns the stage off.
//! Telemetry records in `on_log`, so it sees requests a later stage answered locally too, and
//! takes authz's outcome from memory instead of a stream property. The stages of one
//! request share one view of it (`MemoRequest`), so each header or property is read from the
//! host once, and the breaker sees the canary's cluster header without reading it back.
//!
//! The pipeline itself (stage order, local replies stopping later stages, delayed requests,
//! the root's ticks) is `weft_suite_stages`, host-free and tested against `MockHost`; this
//! crate only wires the proxy-wasm callbacks to it.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use weft_filter_core::explain::TRACE_HEADER;
use weft_filter_core::registry::SUITE_MODULE;
use weft_filter_core::suite::Suite;
use weft_proxy_glue::{self as glue, HostRequest};
use weft_suite_stages::{Stages, SuiteRequest, Ticks};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(SuiteRoot {
            context_id,
            stages: None,
            ticks: Ticks::with_counter_flush(),
            retiring: false,
        })
    });
}}

struct SuiteRoot {
    context_id: u32,
    stages: Option<Rc<Stages>>,
    ticks: Ticks,
    /// `on_done` came while a telemetry report was on its way: finish on its answer.
    retiring: bool,
}

impl Context for SuiteRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _t: usize) {
        if let Some(stages) = &self.stages {
            stages.on_http_call_response(&HostRequest, token);
            if self.retiring && !stages.reporting() {
                self.retiring = false;
                glue::root_done();
            }
        }
    }

    /// Envoy retires a root context when a new configuration replaces it (every policy
    /// change that touches this sidecar's suite entry): the requests counted since the last
    /// tick would die with it, so they are reported now, and the root stays (`false`) until
    /// that report is answered (the call has a timeout, so it always is).
    fn on_done(&mut self) -> bool {
        glue::flush_counters();
        let Some(stages) = &self.stages else {
            return true;
        };
        self.retiring = stages.on_root_done(&HostRequest);
        !self.retiring
    }
}

impl RootContext for SuiteRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(suite) = glue::load_plugin_config(SUITE_MODULE, Suite::from_json) else {
            return false;
        };
        let enabled = suite.enabled();
        // Envoy makes a new root context per configuration, so this is a safety net: never
        // strand requests held under a configuration this root is about to forget.
        if let Some(previous) = self.stages.take() {
            previous.release_delayed(&HostRequest, u64::MAX);
        }
        let stages = Stages::new(suite, self.context_id, &HostRequest);
        self.ticks.configure(&HostRequest, &stages);
        self.stages = Some(Rc::new(stages));
        log::info!("weft-suite: configured, stages [{}]", enabled.join(", "));
        true
    }

    fn on_tick(&mut self) {
        glue::flush_counters();
        let Some(stages) = self.stages.clone() else {
            return;
        };
        self.ticks
            .on_tick(&HostRequest, &stages, glue::now_millis());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self.stages.clone()?;
        // Counter increments are summed while requests overlap on this worker (D106).
        glue::request_began();
        Some(Box::new(SuiteHttp {
            stages,
            request: SuiteRequest::new(context_id),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct SuiteHttp {
    stages: Rc<Stages>,
    request: SuiteRequest,
}

/// The SDK drops an HTTP context in `proxy_on_delete`, after its `on_log` and `on_done`:
/// every increment the request made is in the batch by then.
impl Drop for SuiteHttp {
    fn drop(&mut self) {
        glue::request_ended();
    }
}

impl Context for SuiteHttp {
    fn on_done(&mut self) -> bool {
        self.request.on_done(&self.stages, &HostRequest);
        true
    }
}

impl HttpContext for SuiteHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        glue::action(
            self.request
                .on_request_headers(&self.stages, &HostRequest, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        glue::action(self.request.on_request_body(
            &self.stages,
            &HostRequest,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        glue::action(self.request.on_request_trailers(&self.stages, &HostRequest))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some((header, version)) = self.request.take_response_header() {
            self.set_http_response_header(&header, Some(&version));
        }
        if let Some(trace) = self.request.take_trace_header(&self.stages) {
            self.set_http_response_header(TRACE_HEADER, trace.as_deref());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.request.on_log(&self.stages, &HostRequest);
    }
}
