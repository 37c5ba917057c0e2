use super::*;
use prost::Message;

fn reviews() -> MeshService {
    MeshService {
        namespace: "shop".into(),
        name: "reviews".into(),
        port: 9080,
        host: "reviews".into(),
        stable_version: "v1".into(),
        calls: None,
    }
}

fn ext() -> StaticService {
    StaticService {
        name: "ext".into(),
        host: "example.com".into(),
        port: 443,
    }
}

/// What a request with `host` and (optionally) `x-weft-cluster` would be routed to, read the
/// way Envoy does: first virtual host whose domain matches exactly, else `*`; first route
/// whose header matcher matches. Returns the cluster, `header:<h>` or `404`.
fn route_of(config: &RouteConfiguration, host: &str, cluster_header: Option<&str>) -> String {
    let vhost = config
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == host))
        .or_else(|| config.virtual_hosts.iter().find(|v| v.domains == ["*"]))
        .unwrap();
    for r in &vhost.routes {
        let m = r.r#match.as_ref().unwrap();
        assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
        let matches = m.headers.iter().all(|h| {
            let Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher { regex, .. })),
                ..
            })) = &h.header_match_specifier
            else {
                panic!("unexpected matcher {h:?}")
            };
            assert_eq!(h.name, CLUSTER_HEADER);
            cluster_header.is_some_and(|v| regex_lite_matches(regex, v))
        });
        if !matches {
            continue;
        }
        return match r.action.as_ref().unwrap() {
            route::Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(c)),
                ..
            }) => c.clone(),
            route::Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::ClusterHeader(_)),
                ..
            }) => format!("header:{}", cluster_header.unwrap()),
            route::Action::DirectResponse(d) => d.status.to_string(),
            other => panic!("unexpected action {other:?}"),
        };
    }
    panic!("no route for {host}")
}

/// The only pattern shape this module writes: `^outbound\|P\|[^|]+\|N\.NS$`.
fn regex_lite_matches(regex: &str, value: &str) -> bool {
    let inner = regex.strip_prefix('^').unwrap().strip_suffix('$').unwrap();
    let (head, tail) = inner.split_once("[^|]+").unwrap();
    let unescape = |s: &str| s.replace('\\', "");
    let (head, tail) = (unescape(head), unescape(tail));
    value.len() > head.len() + tail.len()
        && value.starts_with(&head)
        && value.ends_with(&tail)
        && !value[head.len()..value.len() - tail.len()].contains('|')
}

#[test]
fn declared_hosts_reach_their_service_and_nothing_else_is_routed() {
    let config = route_configuration(OUTBOUND_ROUTES, &[reviews()], &[ext()]);
    assert_eq!(config.name, "outbound");
    assert_eq!(route_of(&config, "reviews", None), "reviews");
    assert_eq!(route_of(&config, "reviews:9080", None), "reviews");
    assert_eq!(route_of(&config, "ext", None), "ext");
    for host in [
        "local_app",
        "weft_xds",
        "outbound|9080|v2|reviews.shop",
        "reviews:1",
        "example.com",
        "",
    ] {
        assert_eq!(route_of(&config, host, None), "404", "{host}");
    }
}

#[test]
fn the_cluster_header_selects_only_a_version_of_the_addressed_service() {
    let config = route_configuration(OUTBOUND_ROUTES, &[reviews()], &[ext()]);
    let v2 = "outbound|9080|v2|reviews.shop";
    assert_eq!(
        route_of(&config, "reviews", Some(v2)),
        format!("header:{v2}")
    );
    for other in [
        "weft_xds",
        "local_app",
        "ext",
        "outbound|9080|v2|ratings.shop",
        "outbound|9080|v2|reviews.shopx",
        "outbound|9081|v2|reviews.shop",
        "outbound|9080||reviews.shop",
        "outbound|9080|a|b|reviews.shop",
        "xoutbound|9080|v2|reviews.shop",
    ] {
        assert_eq!(
            route_of(&config, "reviews", Some(other)),
            "reviews",
            "{other}"
        );
    }
    // A static service never follows the header.
    assert_eq!(route_of(&config, "ext", Some(v2)), "ext");
    // The regex is anchored and escapes the dots and bars.
    let Some(route::Action::Route(_)) = &config.virtual_hosts[0].routes[0].action else {
        panic!()
    };
    let regex = match &config.virtual_hosts[0].routes[0]
        .r#match
        .as_ref()
        .unwrap()
        .headers[0]
        .header_match_specifier
    {
        Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::SafeRegex(r)),
            ..
        })) => r.regex.clone(),
        _ => panic!(),
    };
    assert_eq!(regex, r"^outbound\|9080\|[^|]+\|reviews\.shop$");
}

#[test]
fn the_edge_routes_only_mesh_services_and_duplicate_domains_are_skipped() {
    let resources = route_resources(&[reviews(), twin_of()], &[ext()]);
    let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["outbound", "edge"]);
    let edge = RouteConfiguration::decode(resources[1].body.value.as_slice()).unwrap();
    assert_eq!(edge.name, "edge");
    assert_eq!(
        route_of(&edge, "ext", None),
        "404",
        "no static service at the edge"
    );
    assert_eq!(route_of(&edge, "reviews", None), "reviews");
    let domains: Vec<&String> = edge.virtual_hosts.iter().flat_map(|v| &v.domains).collect();
    assert_eq!(domains, ["reviews", "reviews:9080", "*"]);
}

fn twin_of() -> MeshService {
    let mut twin = reviews();
    twin.name = "reviews-twin".into();
    twin
}

#[test]
fn a_shared_host_on_another_port_or_a_wildcard_name_never_makes_an_invalid_configuration() {
    let mut other_port = twin_of();
    other_port.port = 9081;
    let wildcard = StaticService {
        name: "*".into(),
        host: "example.com".into(),
        port: 80,
    };
    let pattern = StaticService {
        name: "*.example.com".into(),
        ..ext()
    };
    let config = route_configuration(
        OUTBOUND_ROUTES,
        &[reviews(), other_port],
        &[wildcard, pattern, ext(), ext()],
    );
    let names: Vec<&str> = config
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "mesh:shop/reviews",
            "mesh:shop/reviews-twin",
            "static:ext",
            "not_declared"
        ]
    );
    let domains: Vec<&String> = config
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.domains)
        .collect();
    assert_eq!(
        domains,
        ["reviews", "reviews:9080", "reviews:9081", "ext", "*"]
    );
}

#[test]
fn regex_metacharacters_in_names_are_escaped() {
    assert_eq!(regex_escape("a.b|c"), r"a\.b\|c");
    assert_eq!(regex_escape("plain-name"), "plain-name");
}
