//! `WebApplicationFirewall` -> the WAF configuration of each sidecar of its target service
//! (and versions): the gateway runs it on its edge listener (`weft.waf`), a service's
//! sidecar in suite mode on its inbound listener (the `waf` section of `weft.suite.inbound`).
//! Validation allows one per service version.

use crate::SidecarId;
use weft_filter_core::waf::WafConfig;
use weft_policy::model::Spec;
use weft_policy::PolicySet;

/// The WAF of sidecar `id`, if a document targets it.
pub(crate) fn compile(set: &PolicySet, id: &SidecarId) -> Option<WafConfig> {
    set.iter().find_map(|doc| match &doc.spec {
        Spec::WebApplicationFirewall(s)
            if doc.namespace() == id.namespace
                && s.target.service == id.service
                && s.target
                    .versions
                    .as_ref()
                    .is_none_or(|v| v.contains(&id.version)) =>
        {
            Some(s.to_config(&format!("{}/{}", doc.namespace(), doc.metadata.name)))
        }
        _ => None,
    })
}
