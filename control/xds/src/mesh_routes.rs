//! RDS for the listeners that route by `Host`: the sidecar's `outbound` listener and the
//! gateway's `edge` listener. Only what is declared is reachable:
//! - per mesh service, a virtual host for its host name (and `host:port`): the version
//!   cluster the canary filter wrote into [`CLUSTER_HEADER`] if it is a cluster *of this
//!   service*, else the stable cluster `<host>`;
//! - on `outbound` only, per static service, a virtual host for its name;
//! - every other `Host` (`local_app`, `weft_xds`, a version cluster's name, anything) gets 404
//!   from a catch-all virtual host.
//!
//! No route names a cluster from a header the client controls: `x-weft-cluster` is removed by
//! the listener before any filter runs (an early header mutation in the bootstrap), so only the
//! canary filter can set it, and even then only a version of the addressed service matches.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route, route_action::ClusterSpecifier,
    route_match::PathSpecifier, DirectResponseAction, HeaderMatcher, Route, RouteAction,
    RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher,
};
use envoy_types::util::pack_any;

use crate::resource::Resource;
use crate::services::{MeshService, StaticService};

/// The route configuration of the sidecar's outbound listener (mesh and static services).
pub const OUTBOUND_ROUTES: &str = "outbound";
/// The route configuration of the gateway's edge listener (mesh services only).
pub const EDGE_ROUTES: &str = "edge";
/// The request header the canary filter writes the chosen version cluster into.
pub const CLUSTER_HEADER: &str = "x-weft-cluster";

/// Both route configurations, as RDS resources.
pub fn route_resources(services: &[MeshService], statics: &[StaticService]) -> Vec<Resource> {
    [
        route_configuration(OUTBOUND_ROUTES, services, statics),
        route_configuration(EDGE_ROUTES, services, &[]),
    ]
    .into_iter()
    .map(|config| Resource::new(config.name.clone(), pack_any(config)))
    .collect()
}

/// One route configuration: a virtual host per declared service, then the 404 catch-all.
/// A domain already taken by an earlier service, and any name with `*` (declared names are
/// hosts, not patterns), is skipped: Envoy refuses a route configuration with a domain twice,
/// which would take every route down.
pub fn route_configuration(
    name: &str,
    services: &[MeshService],
    statics: &[StaticService],
) -> RouteConfiguration {
    let mut taken = BTreeSet::new();
    let mut free = |domains: Vec<String>| -> Vec<String> {
        domains
            .into_iter()
            .filter(|d| !d.is_empty() && !d.contains('*'))
            .filter(|d| taken.insert(d.to_ascii_lowercase()))
            .collect()
    };
    let mut virtual_hosts = Vec::new();
    for service in services {
        let domains = free(vec![
            service.host.clone(),
            format!("{}:{}", service.host, service.port),
        ]);
        if domains.is_empty() {
            continue;
        }
        virtual_hosts.push(VirtualHost {
            name: format!("mesh:{}/{}", service.namespace, service.name),
            domains,
            routes: vec![
                version_route(service),
                forward(None, ClusterSpecifier::Cluster(service.host.clone())),
            ],
            ..Default::default()
        });
    }
    for service in statics {
        let domains = free(vec![service.name.clone()]);
        if domains.is_empty() {
            continue;
        }
        virtual_hosts.push(VirtualHost {
            name: format!("static:{}", service.name),
            domains,
            routes: vec![forward(
                None,
                ClusterSpecifier::Cluster(service.name.clone()),
            )],
            ..Default::default()
        });
    }
    virtual_hosts.push(not_declared());
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

/// The canary's choice, if it names a version cluster of `service`
/// (`outbound|<port>|<any version>|<name>.<namespace>`, see [`crate::mesh::version_cluster`]).
fn version_route(service: &MeshService) -> Route {
    let regex = format!(
        "^outbound\\|{}\\|[^|]+\\|{}\\.{}$",
        service.port,
        regex_escape(&service.name),
        regex_escape(&service.namespace)
    );
    let header = HeaderMatcher {
        name: CLUSTER_HEADER.to_string(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                regex,
                ..Default::default()
            })),
            ..Default::default()
        })),
        ..Default::default()
    };
    forward(
        Some(header),
        ClusterSpecifier::ClusterHeader(CLUSTER_HEADER.to_string()),
    )
}

/// Every path (when `header` matches) to `cluster`.
fn forward(header: Option<HeaderMatcher>, cluster: ClusterSpecifier) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            headers: header.into_iter().collect(),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Any `Host` no declared service has: 404, and nothing behind the sidecar is reached.
fn not_declared() -> VirtualHost {
    VirtualHost {
        name: "not_declared".into(),
        domains: vec!["*".into()],
        routes: vec![Route {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            action: Some(route::Action::DirectResponse(DirectResponseAction {
                status: 404,
                body: Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineString(
                        "weft: no declared service has this Host\n".into(),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `text` as a literal in an RE2 pattern.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
