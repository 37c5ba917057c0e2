#!/usr/bin/env python3
# (Over 400 lines: one self-contained benchmark run, standard library only, so nothing to install.)
"""weft's data-plane benchmark (issue 10): stock Envoy's native filters vs weft's wasm filters.

Run through `scripts/bench`, which builds what is needed first. Python 3.11 standard library only.

What it does, in one invocation:
  * starts the upstreams (two weft-test-service processes, v1 and v2) pinned to the load core;
  * per scenario, starts one Envoy process per variant from the same binary, `--concurrency 1`,
    pinned to the Envoy core, each on its own 127.0.0.1 ports, and checks every variant answers
    as its policy says (200 for the benchmark request, 403 for a denied one where relevant, and
    that the filter under test counted the requests);
  * runs the variants interleaved (A B C A B C ...) for `reps` repetitions; each repetition of a
    variant is one saturation run (wrk, closed loop) and one paced run (wrk with a Lua pacer at
    a fixed aggregate rate below the knee);
  * measures per run: Envoy CPU (utime+stime from /proc/<pid>/stat) per request, throughput,
    p50/p99 latency; per variant at the end: VmRSS / VmHWM and the number of wasm VMs;
  * writes medians, ratios and the raw numbers to bench/results/latest.{json,md} and the
    ratios table between the bench markers in README.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SPIFFE_CALLER = "spiffe://weft.test/ns/corp/sa/exec-portal"
SPIFFE_SERVER = "spiffe://weft.test/ns/shop/sa/reviews"
REQUEST_PATH = "/reports/q3"
REQUEST_HEADERS = {"Host": "reviews", "x-user": "user-42"}
DELAY_MS = 20
# Below this a native filter's added CPU is within the run-to-run noise, and a ratio to it means nothing.
MIN_NATIVE_ADDED_US = 1.0
TARGETS = {
    "suite_added_cpu_ratio_max": 2.0,
    "suite_throughput_vs_router_min": 0.85,
    # The native dynamic module (libweft_suite.so, issue 21 part 2): the whole suite.
    "native_module_added_cpu_ratio_max": 1.3,
    "artifact_kb_max": {"authz": 400, "canary": 200, "fault": 200, "breaker": 200, "suite": 400},
}

# --------------------------------------------------------------------------------------------
# Envoy configuration builders (bootstrap as JSON, which Envoy reads like YAML).


def router_filter() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


def wasm_filter(name: str, wasm: Path, config: dict | None) -> dict:
    plugin: dict = {
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm)}},
        },
    }
    if config is not None:
        plugin["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(config),
        }
    return {
        "name": name,
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": plugin},
    }


NATIVE_MODULE = ROOT / "dist" / "filters" / "libweft_suite.so"


def native_module_filter(name: str, config: dict) -> dict:
    """weft's native dynamic module (libweft_suite.so, found by name in
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH): the suite's stages, `config` holding their sections."""
    return {
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": "weft_suite", "do_not_close": True},
            "filter_name": name,
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(config)},
        },
    }


def rbac_filters(principal: str | None) -> list[dict]:
    """Native RBAC for the policy weft authz gets: DENY /admin/*, then ALLOW GET /reports/*
    (from the exec-portal SPIFFE id when `principal`). Two filters, as Istio generates them."""
    deny = {
        "action": "DENY",
        "policies": {
            "block-admin": {
                "permissions": [{"url_path": {"path": {"prefix": "/admin/"}}}],
                "principals": [{"any": True}],
            }
        },
    }
    who = {"authenticated": {"principal_name": {"exact": principal}}} if principal else {"any": True}
    allow = {
        "action": "ALLOW",
        "policies": {
            "exec-only": {
                "permissions": [
                    {
                        "and_rules": {
                            "rules": [
                                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                                {"url_path": {"path": {"prefix": "/reports/"}}},
                            ]
                        }
                    }
                ],
                "principals": [who],
            }
        },
    }
    return [
        {
            "name": f"envoy.filters.http.rbac.{n}",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules": r},
        }
        for n, r in (("deny", deny), ("allow", allow))
    ]


def authz_config(principal: str | None) -> dict:
    allow_rule: dict = {"methods": ["GET"], "paths": ["/reports/*"]}
    if principal:
        allow_rule = {"principals": [principal], **allow_rule}
    return {
        "trust_domain": "weft.test",
        "policies": [
            {"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]},
            {"name": "exec-only", "action": "ALLOW", "rules": [allow_rule]},
        ],
    }


def native_fault_filter(percent: int) -> dict:
    return {
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "delay": {
                "fixed_delay": f"{DELAY_MS / 1000:.3f}s",
                "percentage": {"numerator": percent, "denominator": "HUNDRED"},
            },
        },
    }


def fault_config(percent: int) -> dict:
    return {
        "percent_cap": 100,
        "max_concurrent_delays": 10_000,
        "policies": [{"name": "bench-delay", "delay": {"percent": float(percent), "fixed_ms": DELAY_MS}}],
    }


def canary_config(sticky: bool) -> dict:
    service: dict = {
        "host": "reviews",
        "stable": "v1",
        "versions": {"v1": {"cluster": "v1"}, "v2": {"cluster": "v2"}},
        "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}],
    }
    if sticky:
        service["sticky"] = {"key": {"header": "x-user"}, "salt": "bench"}
    return {"cluster_header": "x-weft-cluster", "services": [service]}


BREAKER_POLICY = {
    "consecutive_failures": 5,
    "failure_rate": {"threshold_percent": 50, "window_ms": 10_000, "min_requests": 20},
    "open_interval_ms": 5_000,
    "half_open_probes": 3,
    "max_concurrent": 100,
}


def breaker_config(clusters: list[str], cluster_header: str | None) -> dict:
    config: dict = {"clusters": {c: dict(BREAKER_POLICY) for c in clusters}}
    if cluster_header:
        config["cluster_header"] = cluster_header
    return config


def native_breaking() -> dict:
    """Cluster fields equivalent to BREAKER_POLICY: a concurrency cap of 100 and ejection after
    5 consecutive 5xx or a 50 % failure rate over >= 20 requests."""
    return {
        # Without this a single ejected host puts the cluster in panic mode and gets traffic anyway.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "circuit_breakers": {
            "thresholds": [
                {"priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024,
                 "max_requests": 100, "max_retries": 3}
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": 5,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 100,
            "failure_percentage_threshold": 50,
            "failure_percentage_minimum_hosts": 1,
            "failure_percentage_request_volume": 20,
            "enforcing_failure_percentage": 100,
        },
    }


def cluster(name: str, port: int, extra: dict | None = None, tls: dict | None = None) -> dict:
    c: dict = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }
    if extra:
        c.update(extra)
    if tls:
        c["transport_socket"] = tls
    return c


ROUTE_V1 = [{"match": {"prefix": "/"}, "route": {"cluster": "v1"}}]
ROUTE_CANARY = [
    {
        "match": {"prefix": "/", "headers": [{"name": "x-weft-cluster", "present_match": True}]},
        "route": {"cluster_header": "x-weft-cluster"},
    },
    {"match": {"prefix": "/"}, "route": {"cluster": "v1"}},
]


def route_weighted(sticky: bool) -> list[dict]:
    route: dict = {"weighted_clusters": {"clusters": [{"name": "v1", "weight": 75}, {"name": "v2", "weight": 25}]}}
    if sticky:
        route["hash_policy"] = [{"header": {"header_name": "x-user"}}]
        route["weighted_clusters"]["use_hash_policy"] = True
    return [{"match": {"prefix": "/"}, "route": route}]


def bootstrap(admin_port: int, listener_port: int, routes: list[dict], filters: list[dict],
              clusters: list[dict], downstream_tls: dict | None = None) -> dict:
    chain: dict = {
        "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                "http_filters": filters + [router_filter()],
            },
        }]
    }
    if downstream_tls:
        chain["transport_socket"] = downstream_tls
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [chain],
            }],
            "clusters": clusters,
        },
    }


def tls_socket(kind: str, ctx: dict) -> dict:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": f"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{kind}", **ctx},
    }


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Variant:
    scenario: str
    name: str
    role: str  # floor | native | weft
    filters: list[dict]
    routes: list[dict]
    clusters_extra: dict | None = None
    mtls: bool = False
    saturation: bool = True
    checks: list[tuple[str, int]] = field(default_factory=lambda: [(REQUEST_PATH, 200)])
    stat_checks: list[str] = field(default_factory=list)  # stats that must be > 0 after warm-up
    # Trip check: failing requests (upstream answers 503 on `x-fail`) must open the breaker /
    # eject the host, so the next plain request is refused; then it must recover.
    trip: bool = False
    description: str = ""
    # Lua run before the load scripts: the request wrk sends (method, body, headers) when it is
    # not the default GET of REQUEST_PATH.
    request_lua: str = ""
    # filled at run time
    index: int = 0
    listener_port: int = 0
    admin_port: int = 0
    entry_port: int = 0  # where wrk sends (the client Envoy's listener for mTLS variants)
    config_path: Path | None = None
    # Where this Envoy finds libweft_suite.so (default: dist/filters; --baseline-native's
    # directory for the "before" row).
    module_dir: Path | None = None


@dataclass
class Comparison:
    scenario: str
    label: str
    weft: str
    native: str | None
    floor: str


def scenarios(paths: dict[str, Path]) -> tuple[list[Variant], list[Comparison]]:
    w = paths
    vs: list[Variant] = []
    cmp: list[Comparison] = []
    cb = native_breaking()

    def floor(s: str) -> Variant:
        return Variant(s, f"{s.lower()}-router-only", "floor", [], ROUTE_V1,
                       description="router only (the floor)")

    # S0
    vs += [
        floor("S0"),
        Variant("S0", "s0-empty-wasm", "weft", [wasm_filter("bench.empty", w["empty"], None)], ROUTE_V1,
                description="empty Rust proxy-wasm filter (bench/empty-filter)"),
    ]
    vs.append(Variant("S0", "s0-empty-native", "weft",
                      [native_module_filter("weft.suite", {"listener": "outbound"})], ROUTE_V1,
                      description="the native module (libweft_suite.so) with no stage enabled"))
    cmp.append(Comparison("S0", "empty wasm filter", "s0-empty-wasm", None, "s0-router-only"))
    cmp.append(Comparison("S0", "empty native module", "s0-empty-native", None, "s0-router-only"))

    # S1 (mTLS: the caller sidecar on the load core originates mTLS with a SPIFFE client cert)
    deny_check = [(REQUEST_PATH, 200), ("/admin/x", 403)]
    vs += [
        Variant("S1", "s1-router-only-mtls", "floor", [], ROUTE_V1, mtls=True,
                description="router only, downstream mTLS"),
        Variant("S1", "s1-native-rbac", "native", rbac_filters(SPIFFE_CALLER), ROUTE_V1, mtls=True,
                checks=deny_check, stat_checks=["http.bench.rbac.allowed"],
                description="native RBAC: DENY /admin/*, ALLOW exec-portal GET /reports/*"),
        Variant("S1", "s1-weft-authz", "weft", [wasm_filter("weft.authz", w["authz"], authz_config(SPIFFE_CALLER))],
                ROUTE_V1, mtls=True, checks=deny_check, stat_checks=["wasmcustom.weft.authz.allowed"],
                description="weft authz, same policy"),
    ]
    vs.append(Variant("S1", "s1-weft-authz-native", "weft",
                      [native_module_filter("weft.suite", {"authz": authz_config(SPIFFE_CALLER)})], ROUTE_V1,
                      mtls=True, checks=deny_check, stat_checks=["dynamicmodulescustom.weft.authz.allowed"],
                      description="weft authz in the native module, same policy"))
    cmp.append(Comparison("S1", "authz vs RBAC (mTLS)", "s1-weft-authz", "s1-native-rbac", "s1-router-only-mtls"))
    cmp.append(Comparison("S1", "authz native module vs RBAC (mTLS)", "s1-weft-authz-native", "s1-native-rbac",
                          "s1-router-only-mtls"))

    # S2
    vs += [
        floor("S2"),
        Variant("S2", "s2-native-weighted", "native", [], route_weighted(False), clusters_extra=None,
                stat_checks=["cluster.v2.upstream_rq_total"], description="weighted_clusters 75/25"),
        Variant("S2", "s2-weft-canary", "weft", [wasm_filter("weft.canary", w["canary"], canary_config(False))],
                ROUTE_CANARY, stat_checks=["wasmcustom.weft.canary.reviews.v2.requests"],
                description="weft canary 7500/2500 bp, random"),
        Variant("S2", "s2-native-weighted-hash", "native", [], route_weighted(True),
                description="weighted_clusters 75/25 with use_hash_policy on x-user"),
        Variant("S2", "s2-weft-canary-sticky", "weft",
                [wasm_filter("weft.canary", w["canary"], canary_config(True))], ROUTE_CANARY,
                stat_checks=["wasmcustom.weft.canary.reviews."],
                description="weft canary, sticky on x-user (sha256 bucket)"),
    ]
    vs.append(Variant("S2", "s2-weft-canary-native", "weft",
                      [native_module_filter("weft.suite", {"canary": canary_config(False)})], ROUTE_CANARY,
                      stat_checks=["dynamicmodulescustom.weft.canary.reviews.v2.requests"],
                      description="weft canary in the native module, 7500/2500 bp, random"))
    cmp.append(Comparison("S2", "canary vs weighted_clusters", "s2-weft-canary", "s2-native-weighted", "s2-router-only"))
    cmp.append(Comparison("S2", "canary native module vs weighted_clusters", "s2-weft-canary-native",
                          "s2-native-weighted", "s2-router-only"))
    cmp.append(Comparison("S2", "sticky canary vs hash weighted", "s2-weft-canary-sticky", "s2-native-weighted-hash",
                          "s2-router-only"))

    # S3
    vs += [floor("S3")]
    for pct in (0, 10):
        vs += [
            Variant("S3", f"s3-native-fault-{pct}", "native", [native_fault_filter(pct)], ROUTE_V1,
                    stat_checks=["http.bench.fault.delays_injected"] if pct else [],
                    description=f"native fault, {DELAY_MS} ms delay at {pct} %"),
            Variant("S3", f"s3-weft-fault-{pct}", "weft", [wasm_filter("weft.fault", w["fault"], fault_config(pct))],
                    ROUTE_V1,
                    stat_checks=["wasmcustom.weft.fault.policy.bench-delay.delays_injected"] if pct else [],
                    description=f"weft fault, {DELAY_MS} ms delay at {pct} %"),
        ]
        vs.append(Variant("S3", f"s3-weft-fault-{pct}-native", "weft",
                          [native_module_filter("weft.suite", {"fault": fault_config(pct)})], ROUTE_V1,
                          stat_checks=["dynamicmodulescustom.weft.fault.policy.bench-delay.delays_injected"]
                          if pct else [],
                          description=f"weft fault in the native module, {DELAY_MS} ms delay at {pct} %"))
        cmp.append(Comparison("S3", f"fault {pct} % delay", f"s3-weft-fault-{pct}", f"s3-native-fault-{pct}",
                              "s3-router-only"))
        cmp.append(Comparison("S3", f"fault {pct} % delay, native module", f"s3-weft-fault-{pct}-native",
                              f"s3-native-fault-{pct}", "s3-router-only"))
    vs += [
        Variant("S3", "s3-native-fault-100", "native", [native_fault_filter(100)], ROUTE_V1, saturation=False,
                description=f"native fault, {DELAY_MS} ms delay at 100 % (delay accuracy only)"),
        Variant("S3", "s3-weft-fault-100", "weft", [wasm_filter("weft.fault", w["fault"], fault_config(100))],
                ROUTE_V1, saturation=False,
                description=f"weft fault, {DELAY_MS} ms delay at 100 % (delay accuracy only)"),
    ]

    # S4
    vs += [
        floor("S4"),
        Variant("S4", "s4-native-breaker", "native", [], ROUTE_V1, clusters_extra=cb, trip=True,
                stat_checks=["cluster.v1.outlier_detection.ejections_enforced_total"],
                description="circuit_breakers max_requests 100 + outlier_detection (5 consecutive 5xx, 50 %)"),
        Variant("S4", "s4-weft-breaker", "weft",
                [wasm_filter("weft.breaker", w["breaker"], breaker_config(["v1"], None))], ROUTE_V1,
                trip=True, stat_checks=["wasmcustom.weft.breaker.v1.opens"],
                description="weft breaker: 5 consecutive / 50 % over 20, max_concurrent 100"),
    ]
    vs.append(Variant("S4", "s4-weft-breaker-native", "weft",
                      [native_module_filter("weft.suite", {"breaker": breaker_config(["v1"], None)})], ROUTE_V1,
                      trip=True, stat_checks=["dynamicmodulescustom.weft.breaker.v1.opens"],
                      description="weft breaker in the native module, same policy"))
    cmp.append(Comparison("S4", "breaker vs circuit_breakers+outlier", "s4-weft-breaker", "s4-native-breaker",
                          "s4-router-only"))
    cmp.append(Comparison("S4", "breaker native module vs circuit_breakers+outlier", "s4-weft-breaker-native",
                          "s4-native-breaker", "s4-router-only"))

    # S5
    vs += [
        floor("S5"),
        Variant("S5", "s5-native-all", "native", rbac_filters(None) + [native_fault_filter(0)], route_weighted(False),
                clusters_extra=cb, checks=deny_check, trip=True,
                stat_checks=["http.bench.rbac.allowed", "cluster.v2.upstream_rq_total",
                             "cluster.v1.outlier_detection.ejections_enforced_total"],
                description="RBAC + fault 0 % + weighted_clusters + circuit_breakers/outlier_detection"),
        Variant("S5", "s5-weft-all", "weft", [
            wasm_filter("weft.authz", w["authz"], authz_config(None)),
            wasm_filter("weft.canary", w["canary"], canary_config(False)),
            wasm_filter("weft.fault", w["fault"], fault_config(0)),
            wasm_filter("weft.breaker", w["breaker"], breaker_config(["v1", "v2"], "x-weft-cluster")),
        ], ROUTE_CANARY, checks=deny_check, trip=True,
            stat_checks=["wasmcustom.weft.authz.allowed", "wasmcustom.weft.canary.reviews.v2.requests",
                         "wasmcustom.weft.breaker.v1.opens"],
            description="authz -> canary -> fault 0 % -> breaker"),
    ]

    def s5_suite_config(current: bool) -> dict:
        """The four policies as one suite configuration. No telemetry filter is in this chain,
        so (as weft's compiler renders a suite without telemetry, D108) nothing outside the
        module reads the stages' marks: `publish_marks` is false. An earlier build (a
        `--baseline-*` row) does not know the field and gets the configuration it knew."""
        config = {
            "authz": authz_config(None),
            "canary": canary_config(False),
            "fault": fault_config(0),
            "breaker": breaker_config(["v1", "v2"], "x-weft-cluster"),
        }
        if current:
            config["publish_marks"] = False
        return config

    def suite_variant(name: str, wasm: Path, description: str, current: bool = True) -> Variant:
        return Variant("S5", name, "weft", [
            wasm_filter("weft.suite", wasm, s5_suite_config(current)),
        ], ROUTE_CANARY, checks=deny_check, trip=True,
            stat_checks=["wasmcustom.weft.authz.allowed", "wasmcustom.weft.canary.reviews.v2.requests",
                         "wasmcustom.weft.breaker.v1.opens"],
            description=description)

    vs.append(suite_variant("s5-weft-suite", w["suite"],
                            "weft suite: the same four policies as stages of one module (one VM, one HTTP context)"))
    if "suite_before" in w:
        # --baseline-suite: the same four policies through an earlier build of suite.wasm, so
        # one interleaved run shows a change's effect.
        vs.append(suite_variant("s5-weft-suite-before", w["suite_before"],
                                f"weft suite as built before ({w['suite_before'].name}), same policies",
                                current=False))
    # The first S5 comparison is the one the targets judge: the one-module suite is how weft runs
    # the whole suite; the chain stays for comparison.
    cmp.append(Comparison("S5", "whole suite, one module", "s5-weft-suite", "s5-native-all", "s5-router-only"))
    def native_suite_variant(name: str, module_dir: Path | None, description: str) -> Variant:
        return Variant("S5", name, "weft", [
            native_module_filter("weft.suite", s5_suite_config(module_dir is None)),
        ], ROUTE_CANARY, checks=deny_check, trip=True,
            stat_checks=["dynamicmodulescustom.weft.authz.allowed",
                         "dynamicmodulescustom.weft.canary.reviews.v2.requests",
                         "dynamicmodulescustom.weft.breaker.v1.opens"],
            description=description, module_dir=module_dir)

    vs.append(native_suite_variant("s5-weft-suite-native", None,
                                   "weft suite as the native dynamic module libweft_suite.so (same stages, same policies)"))
    if "native_before" in w:
        # --baseline-native: the same policies through an earlier libweft_suite.so (its directory
        # is this Envoy's module search path).
        vs.append(native_suite_variant("s5-weft-suite-native-before", w["native_before"].parent,
                                       f"weft suite as the native module built before ({w['native_before']}), "
                                       "same policies"))
    cmp.append(Comparison("S5", "whole suite, four chained", "s5-weft-all", "s5-native-all", "s5-router-only"))
    cmp.append(Comparison("S5", "whole suite, native module", "s5-weft-suite-native", "s5-native-all",
                          "s5-router-only"))
    if "suite_before" in w:
        cmp.append(Comparison("S5", "whole suite, one module, before", "s5-weft-suite-before", "s5-native-all",
                              "s5-router-only"))
    if "native_before" in w:
        cmp.append(Comparison("S5", "whole suite, native module, before", "s5-weft-suite-native-before",
                              "s5-native-all", "s5-router-only"))

    # S6: the edge WAF (waf.wasm, default rules and limits) against the router alone, for a
    # small GET with a query and a 10 KB JSON POST (held and inspected whole). Envoy has no
    # native WAF to compare with.
    small_lua = 'wrk.path = "%s?q=red+shoes&page=2&sort=price"\n' % REQUEST_PATH
    body = json.dumps({"items": [{"sku": f"SKU-{i:04d}", "name": f"blue cotton shirt size {i % 5}",
                                  "qty": i % 3 + 1, "note": "leave it at the door, thanks!"} for i in range(110)]})
    big_lua = ('wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' % body)
    waf = wasm_filter("weft.waf", w["waf"], {"name": "bench"})
    for label, lua, size in (("small GET", small_lua, "small"), ("10 KB JSON POST", big_lua, "10k")):
        vs += [
            Variant("S6", f"s6-router-{size}", "floor", [], ROUTE_V1, request_lua=lua,
                    description=f"router only, {label} (the floor)"),
            Variant("S6", f"s6-weft-waf-{size}", "weft", [waf], ROUTE_V1, request_lua=lua,
                    stat_checks=["wasmcustom.weft.waf.passed"],
                    description=f"weft WAF (default rules and limits), {label}"),
        ]
        cmp.append(Comparison("S6", f"edge WAF, {label}", f"s6-weft-waf-{size}", None, f"s6-router-{size}"))
        if "waf_before" in w:
            before = wasm_filter("weft.waf", w["waf_before"], {"name": "bench"})
            vs.append(Variant("S6", f"s6-weft-waf-{size}-before", "weft", [before], ROUTE_V1, request_lua=lua,
                              stat_checks=["wasmcustom.weft.waf.passed"],
                              description=f"weft WAF as built before ({w['waf_before'].name}), {label}"))
            cmp.append(Comparison("S6", f"edge WAF, {label}, before", f"s6-weft-waf-{size}-before", None,
                                  f"s6-router-{size}"))
    return vs, cmp


# --------------------------------------------------------------------------------------------
# Processes


class Procs:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        fh = open(log, "wb")
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        fh.close()
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self) -> None:
        for _, p in list(reversed(self.procs)):
            self.stop(p)


PROCS = Procs()


def log(msg: str) -> None:
    print(f"\033[1m[bench]\033[0m {msg}", file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Envoy binds: connections of an earlier run in TIME_WAIT do not block the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def http_get(port: int, path: str, headers: dict | None = None, timeout: float = 2.0) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_until(what: str, fn, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = fn()
            if r:
                return r
        except Exception as e:  # noqa: BLE001 - polled, reported on timeout
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what} (last error: {last})")


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def sched_ns(pid: int) -> int:
    """CPU time of all threads in ns (/proc/<pid>/task/*/schedstat): a finer cross-check of
    cpu_ticks, whose resolution is one clock tick."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((t / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def stats(admin_port: int) -> dict[str, int]:
    _, body = http_get(admin_port, "/stats?usedonly", timeout=5)
    out = {}
    for line in body.splitlines():
        k, _, v = line.partition(": ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


# --------------------------------------------------------------------------------------------
# Load generation (wrk on the load core)

LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""

# A shared send schedule for all connections of the (single) wrk thread: every finished
# response claims the next slot `1/rate` after the previous one, so the aggregate request rate
# is fixed as long as a connection is free (wrk's delay() has millisecond resolution).
LUA_PACED = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local period = 1000 / __RATE__
local next_slot = nil
function delay()
  local t = now_ms()
  if next_slot == nil or next_slot < t - 50 then next_slot = t end
  next_slot = next_slot + period
  local d = next_slot - t
  if d < 0 then return 0 end
  return d
end
"""


def wrk(port: int, core: int | None, conns: int, secs: float, script: Path) -> dict:
    argv = []
    if core is not None:
        argv += ["taskset", "-c", str(core)]
    argv += ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(secs))}s", "--timeout", "3s", "-s", str(script)]
    for k, v in REQUEST_HEADERS.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(f"http://127.0.0.1:{port}{REQUEST_PATH}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30)
    m = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    return json.loads(m.group(1))


# --------------------------------------------------------------------------------------------


def make_certs(d: Path) -> dict[str, Path]:
    def run(*a: str) -> None:
        subprocess.run(list(a), check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=weft-bench-ca",
        "-days", "2")
    for name, san, eku in (("server", f"DNS:reviews,URI:{SPIFFE_SERVER}", "serverAuth"),
                           ("client", f"URI:{SPIFFE_CALLER}", "clientAuth")):
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={eku}\n")
        run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {k: d / k for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.tmp = Path(tempfile.mkdtemp(prefix="weft-bench-"))
        self.envoy = Path(args.envoy)
        self.results: dict[str, dict] = {}
        self.envoy_core = args.envoy_core
        self.load_core = args.load_core
        self.clk = os.sysconf("SC_CLK_TCK")

    # -- processes ---------------------------------------------------------------------------
    def start_envoy(self, name: str, config: dict, core: int | None,
                    module_dir: Path | None = None) -> subprocess.Popen:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(config, indent=1))
        argv = []
        if core is not None:
            argv += ["taskset", "-c", str(core)]
        argv += [str(self.envoy), "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
                 "-l", "warning", "--service-node", name, "--service-cluster", "weft-bench"]
        # The native module is found by name there (`dynamic_module_config.name: weft_suite`).
        env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module_dir or NATIVE_MODULE.parent)}
        return PROCS.start(name, argv, self.tmp / f"{name}.log", env=env)

    def envoy_pid(self, p: subprocess.Popen) -> int:
        # With taskset the Popen pid is the envoy itself (taskset execs).
        return p.pid

    def start_upstreams(self) -> None:
        exe = ROOT / "target" / "release" / "weft-test-service"
        for ver, port in (("v1", self.port_v1), ("v2", self.port_v2)):
            env = dict(os.environ, SERVICE_NAME="reviews", SERVICE_VERSION=ver, PORT=str(port))
            argv = (["taskset", "-c", str(self.load_core)] if self.load_core is not None else []) + [str(exe)]
            PROCS.start(f"upstream-{ver}", argv, self.tmp / f"upstream-{ver}.log", env=env)
            wait_until(f"upstream {ver}", lambda port=port: http_get(port, "/")[0] == 200, 20)

    # -- one scenario ------------------------------------------------------------------------
    def run_scenario(self, name: str, variants: list[Variant]) -> None:
        log(f"{name}: starting {len(variants)} Envoys ({', '.join(v.name for v in variants)})")
        started: list[tuple[Variant, subprocess.Popen]] = []
        client = None
        try:
            for v in variants:
                clusters = [cluster("v1", self.port_v1, v.clusters_extra), cluster("v2", self.port_v2, v.clusters_extra)]
                dtls = None
                if v.mtls:
                    dtls = tls_socket("DownstreamTlsContext", {
                        "require_client_certificate": True,
                        "common_tls_context": {
                            "tls_certificates": [{"certificate_chain": {"filename": str(self.certs["server.crt"])},
                                                  "private_key": {"filename": str(self.certs["server.key"])}}],
                            "validation_context": {"trusted_ca": {"filename": str(self.certs["ca.crt"])}},
                        },
                    })
                cfg = bootstrap(v.admin_port, v.listener_port, v.routes, v.filters, clusters, dtls)
                self.save_config(v.name, cfg)
                started.append((v, self.start_envoy(v.name, cfg, self.envoy_core, v.module_dir)))
            mtls = [v for v in variants if v.mtls]
            if mtls:
                client = self.start_client_envoy(name, mtls)
            for v, p in started:
                wait_until(f"{v.name} ready", lambda v=v, p=p: self.alive(p, v) and
                           http_get(v.admin_port, "/ready")[0] == 200, 60)
                if client:
                    wait_until("client envoy ready", lambda: http_get(self.client_admin, "/ready")[0] == 200, 60)
                for path, want in v.checks:
                    wait_until(f"{v.name} {path} -> {want}",
                               lambda v=v, path=path, want=want: http_get(v.entry_port, path, REQUEST_HEADERS)[0] == want,
                               15)
            tripped = [v for v, _ in started if v.trip]
            for v in tripped:
                # Envoy ejects a host on its main thread after the 5th consecutive 5xx, and
                # weft's breaker opens once its workers' failures meet in shared data: either
                # may lag the last failure by a moment on a loaded machine, so each round of
                # 20 failures is followed by a short wait for the 503 (3 rounds at most).
                status, body = 0, b""
                for _ in range(3):
                    for _ in range(20):
                        http_get(v.entry_port, REQUEST_PATH, {**REQUEST_HEADERS, "x-fail": "503"})
                    deadline = time.monotonic() + 1.0
                    while time.monotonic() < deadline:
                        status, body = http_get(v.entry_port, REQUEST_PATH, REQUEST_HEADERS)
                        if status == 503:
                            break
                        time.sleep(0.1)
                    if status == 503:
                        break
                if status != 503:
                    raise RuntimeError(f"{v.name}: breaker did not open after 3 rounds of 20 failures ({status} {body[:200]})")
            for v in tripped:
                wait_until(f"{v.name} to recover after the trip check",
                           lambda v=v: http_get(v.entry_port, REQUEST_PATH, REQUEST_HEADERS)[0] == 200, 40, 0.25)
            if tripped:
                log(f"{name}: trip check passed ({', '.join(v.name for v in tripped)})")
            # Warm-up (connection pools, JIT tiers), then the stat checks: each filter must have
            # handled the traffic.
            for v, _ in started:
                wrk(v.entry_port, self.load_core, self.a.conns, self.a.warmup, self.script(v, "sat"))
                st = stats(v.admin_port)
                for key in v.stat_checks:
                    hits = {k: x for k, x in st.items() if k.startswith(key)}
                    if not any(x > 0 for x in hits.values()):
                        raise RuntimeError(f"{v.name}: stat {key}* not counting ({hits}); filter not in the path?")
                self.results[v.name] = {"variant": v, "pid": self.envoy_pid(_), "reps": [],
                                        "stats_before": {k: x for k, x in st.items()}}
            for rep in range(self.a.reps):
                for v, p in started:
                    self.results[v.name]["reps"].append(self.measure(v, p))
                log(f"{name}: repetition {rep + 1}/{self.a.reps} done")
            for v, p in started:
                if v.name in self.a.perf:
                    self.profile(v, p)
            for v, p in started:
                r = self.results[v.name]
                pid = self.envoy_pid(p)
                r["rss_kb"] = proc_status_kb(pid, "VmRSS")
                r["hwm_kb"] = proc_status_kb(pid, "VmHWM")
                st = stats(v.admin_port)
                r["wasm_vms_active"] = st.get("wasm.envoy.wasm.runtime.v8.active", 0)
                r["wasm_vms_created"] = st.get("wasm.envoy.wasm.runtime.v8.created", 0)
                keep = re.compile(r"^(wasmcustom\.|dynamicmodulescustom\.|http\.bench\.(rbac|fault)|http\.bench\.downstream_rq_[2-5]xx|"
                                  r"cluster\.v[12]\.(upstream_rq_total|upstream_rq_pending_overflow|outlier_detection|"
                                  r"upstream_cx_total))")
                r["stats_after"] = {k: x for k, x in st.items() if keep.match(k)}
                r.pop("stats_before", None)
        finally:
            if client:
                PROCS.stop(client)
            for _, p in started:
                PROCS.stop(p)

    def profile(self, v: Variant, p: subprocess.Popen) -> None:
        """--perf: `perf record -e cpu-clock -g` on this Envoy during one saturation run of
        --perf-secs, then `perf report --sort dso,sym` into <out>/perf/<variant>.txt with the
        request count, so a share of samples converts to µs per request."""
        d = self.a.out / "perf"
        d.mkdir(parents=True, exist_ok=True)
        data = d / f"{v.name}.data"
        rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-g", "-o", str(data),
                                "-p", str(self.envoy_pid(p))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        n0 = sched_ns(self.envoy_pid(p))
        r = wrk(v.entry_port, self.load_core, self.a.conns, self.a.perf_secs, self.script(v, "sat"))
        n1 = sched_ns(self.envoy_pid(p))
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
                                 "--stdio", "-g", "none", "--percent-limit", "0.3"],
                                capture_output=True, text=True, timeout=300)
        head = (f"# {v.name}: {r['requests']} requests in {r['duration_us'] / 1e6:.1f} s, "
                f"Envoy CPU {(n1 - n0) / 1e3 / max(1, r['requests']):.1f} µs/request (schedstat), "
                f"load average {os.getloadavg()}\n")
        (d / f"{v.name}.txt").write_text(head + report.stdout)
        log(f"perf: {d / (v.name + '.txt')}")

    def alive(self, p: subprocess.Popen, v: Variant) -> bool:
        if p.poll() is not None:
            logf = self.tmp / f"{v.name}.log"
            tail = logf.read_text(errors="replace")[-3000:] if logf.exists() else ""
            raise SystemExit(f"Envoy {v.name} exited ({p.returncode}):\n{tail}")
        return True

    def start_client_envoy(self, name: str, variants: list[Variant]) -> subprocess.Popen:
        """The caller's sidecar: plaintext listeners on the load core, each originating mTLS
        with the exec-portal SPIFFE certificate to one measured Envoy."""
        listeners, clusters = [], []
        for v in variants:
            up = tls_socket("UpstreamTlsContext", {
                "sni": "reviews",
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": str(self.certs["client.crt"])},
                                          "private_key": {"filename": str(self.certs["client.key"])}}],
                    "validation_context": {
                        "trusted_ca": {"filename": str(self.certs["ca.crt"])},
                        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": SPIFFE_SERVER}}],
                    },
                },
            })
            clusters.append(cluster(f"to-{v.name}", v.listener_port, tls=up))
            b = bootstrap(0, v.entry_port, [{"match": {"prefix": "/"}, "route": {"cluster": f"to-{v.name}"}}], [], [])
            lst = b["static_resources"]["listeners"][0]
            lst["name"] = f"to-{v.name}"
            listeners.append(lst)
        cfg = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.client_admin}}},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        }
        self.save_config(f"{name.lower()}-caller-sidecar", cfg)
        return self.start_envoy(f"{name.lower()}-caller-sidecar", cfg, self.load_core)

    def save_config(self, name: str, cfg: dict) -> None:
        d = self.a.out / "configs"
        d.mkdir(parents=True, exist_ok=True)
        text = json.dumps(cfg, indent=1).replace(str(self.tmp), "$TMP").replace(str(ROOT), "$WEFT_ROOT")
        (d / f"{name}.json").write_text(text + "\n")

    def script(self, v: Variant, kind: str) -> Path:
        """The load script of `kind` (sat or paced) for `v`: the shared one, or its own with its
        request in front."""
        shared = self.sat_lua if kind == "sat" else self.paced_lua
        if not v.request_lua:
            return shared
        own = self.tmp / f"{v.name}-{kind}.lua"
        if not own.exists():
            own.write_text(v.request_lua + shared.read_text())
        return own

    def measure(self, v: Variant, p: subprocess.Popen) -> dict:
        pid = self.envoy_pid(p)
        out: dict = {}
        if v.saturation:
            c0, n0, t0 = cpu_ticks(pid), sched_ns(pid), time.monotonic()
            r = wrk(v.entry_port, self.load_core, self.a.conns, self.a.duration, self.script(v, "sat"))
            c1, n1, t1 = cpu_ticks(pid), sched_ns(pid), time.monotonic()
            cpu_s = (c1 - c0) / self.clk
            out["saturation"] = {
                **r,
                "rps": r["requests"] / (r["duration_us"] / 1e6),
                "envoy_cpu_s": cpu_s,
                "envoy_cpu_us_per_req": cpu_s * 1e6 / max(1, r["requests"]),
                "envoy_cpu_us_per_req_schedstat": (n1 - n0) / 1e3 / max(1, r["requests"]),
                "envoy_core_busy": cpu_s / (t1 - t0),
            }
        c0, n0, t0 = cpu_ticks(pid), sched_ns(pid), time.monotonic()
        r = wrk(v.entry_port, self.load_core, self.a.paced_conns, self.a.duration, self.script(v, "paced"))
        c1, n1, t1 = cpu_ticks(pid), sched_ns(pid), time.monotonic()
        cpu_s = (c1 - c0) / self.clk
        out["paced"] = {
            **r,
            "rps": r["requests"] / (r["duration_us"] / 1e6),
            "envoy_cpu_s": cpu_s,
            "envoy_cpu_us_per_req": cpu_s * 1e6 / max(1, r["requests"]),
            "envoy_cpu_us_per_req_schedstat": (n1 - n0) / 1e3 / max(1, r["requests"]),
            "envoy_core_busy": cpu_s / (t1 - t0),
        }
        return out

    # -- whole run ---------------------------------------------------------------------------
    def run(self) -> dict:
        a = self.a
        base = a.port_base
        self.port_v1, self.port_v2, self.client_admin = base + 1, base + 2, base + 3
        wasm = {f: ROOT / "dist" / "filters" / f"{f}.wasm" for f in ("authz", "canary", "fault", "breaker", "suite", "waf")}
        wasm["empty"] = BENCH / "empty-filter" / "target" / "wasm32-wasip1" / "release" / "weft_bench_empty_filter.wasm"
        if a.baseline_suite:
            wasm["suite_before"] = a.baseline_suite.resolve()
        if a.baseline_waf:
            wasm["waf_before"] = a.baseline_waf.resolve()
        if a.baseline_native:
            wasm["native_before"] = a.baseline_native.resolve()
        for k, pth in [*wasm.items(), ("native", NATIVE_MODULE)]:
            if not pth.exists():
                raise SystemExit(f"missing {pth} (scripts/bench builds it unless --no-build)")
        variants, comparisons = scenarios(wasm)
        wanted = set(a.scenarios.split(",")) if a.scenarios else None
        variants = [v for v in variants if not wanted or v.scenario in wanted]
        comparisons = [c for c in comparisons if not wanted or c.scenario in wanted]
        for i, v in enumerate(variants):
            v.index, v.listener_port, v.admin_port = i, base + 100 + i, base + 300 + i
            v.entry_port = base + 200 + i if v.mtls else v.listener_port
        ports = [self.port_v1, self.port_v2, self.client_admin] + [p for v in variants for p in
                                                                  (v.listener_port, v.admin_port, v.entry_port)]
        busy = sorted({p for p in ports if not port_free(p)})
        if busy:
            raise SystemExit(f"ports in use on 127.0.0.1: {busy} (choose another --port-base)")
        if any(v.mtls for v in variants):
            (self.tmp / "certs").mkdir()
            self.certs = make_certs(self.tmp / "certs")
        self.sat_lua = self.tmp / "sat.lua"
        self.sat_lua.write_text(LUA_DONE)
        self.paced_lua = self.tmp / "paced.lua"
        self.paced_lua.write_text(LUA_PACED.replace("__RATE__", str(a.rate)) + LUA_DONE)
        shutil.rmtree(a.out / "configs", ignore_errors=True)

        started_at = dt.datetime.now(dt.timezone.utc)
        load_before = os.getloadavg()
        t0 = time.monotonic()
        self.start_upstreams()
        order: list[str] = []
        for v in variants:
            if v.scenario not in order:
                order.append(v.scenario)
        for s in order:
            self.run_scenario(s, [v for v in variants if v.scenario == s])
        elapsed = time.monotonic() - t0
        return self.summarise(variants, comparisons, wasm, started_at, load_before, elapsed)

    # -- summary -----------------------------------------------------------------------------
    def summarise(self, variants, comparisons, wasm, started_at, load_before, elapsed) -> dict:
        a = self.a
        per: dict[str, dict] = {}
        for v in variants:
            r = self.results[v.name]
            reps = r["reps"]

            def med(kind: str, key: str) -> float | None:
                return median([x[kind][key] for x in reps if kind in x])

            per[v.name] = {
                "scenario": v.scenario,
                "role": v.role,
                "description": v.description,
                "mtls": v.mtls,
                "median": {
                    "cpu_us_per_req": med("saturation", "envoy_cpu_us_per_req"),
                "cpu_us_per_req_min": min((x["saturation"]["envoy_cpu_us_per_req"] for x in reps if "saturation" in x),
                                          default=None),
                "cpu_us_per_req_max": max((x["saturation"]["envoy_cpu_us_per_req"] for x in reps if "saturation" in x),
                                          default=None),
                # What one Envoy core could serve at that cost (the measured saturation is often
                # bounded by the load core instead: see envoy_core_busy).
                "capacity_rps": (1e6 / med("saturation", "envoy_cpu_us_per_req"))
                if med("saturation", "envoy_cpu_us_per_req") else None,
                    "saturation_rps": med("saturation", "rps"),
                    "envoy_core_busy": med("saturation", "envoy_core_busy"),
                    "paced_rps": med("paced", "rps"),
                    "paced_cpu_us_per_req": med("paced", "envoy_cpu_us_per_req"),
                    "p50_ms": (med("paced", "p50_us") or 0) / 1000,
                    "p90_ms": (med("paced", "p90_us") or 0) / 1000,
                    "p99_ms": (med("paced", "p99_us") or 0) / 1000,
                    "p999_ms": (med("paced", "p999_us") or 0) / 1000,
                },
                "rss_mb": r["rss_kb"] / 1024,
                "rss_peak_mb": r["hwm_kb"] / 1024,
                "wasm_vms_active": r["wasm_vms_active"],
                "wasm_vms_created": r["wasm_vms_created"],
                "errors": sum(x[k][e] for x in reps for k in x for e in
                              ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")),
                "stats": r["stats_after"],
                "reps": reps,
            }

        def ratio(x, y):
            return x / y if x is not None and y not in (None, 0) else None

        ratios = []
        for c in comparisons:
            W, F = per[c.weft]["median"], per[c.floor]["median"]
            N = per[c.native]["median"] if c.native else None
            row = {
                "scenario": c.scenario, "label": c.label, "weft": c.weft, "native": c.native, "floor": c.floor,
                "weft_added_cpu_us": W["cpu_us_per_req"] - F["cpu_us_per_req"],
                "native_added_cpu_us": (N["cpu_us_per_req"] - F["cpu_us_per_req"]) if N else None,
                "cpu_weft_over_native": ratio(W["cpu_us_per_req"], N["cpu_us_per_req"]) if N else None,
                "cpu_weft_over_router": ratio(W["cpu_us_per_req"], F["cpu_us_per_req"]),
                "paced_added_cpu_weft_us": W["paced_cpu_us_per_req"] - F["paced_cpu_us_per_req"],
                "paced_added_cpu_native_us": (N["paced_cpu_us_per_req"] - F["paced_cpu_us_per_req"]) if N else None,
                "capacity_weft_over_native": ratio(W["capacity_rps"], N["capacity_rps"]) if N else None,
                "capacity_weft_over_router": ratio(W["capacity_rps"], F["capacity_rps"]),
                "rps_weft_over_native": ratio(W["saturation_rps"], N["saturation_rps"]) if N else None,
                "rps_weft_over_router": ratio(W["saturation_rps"], F["saturation_rps"]),
                "p99_weft_over_native": ratio(W["p99_ms"], N["p99_ms"]) if N else None,
            }
            row["added_cpu_weft_over_native"] = (ratio(row["weft_added_cpu_us"], row["native_added_cpu_us"])
                                                 if N and row["native_added_cpu_us"] is not None
                                                 and row["native_added_cpu_us"] >= MIN_NATIVE_ADDED_US else None)
            ratios.append(row)

        delay_acc = {}
        for name in ("s3-native-fault-100", "s3-weft-fault-100"):
            if name in per:
                m = per[name]["median"]
                floor = per.get("s3-router-only", {}).get("median", {})
                delay_acc[name] = {
                    "configured_ms": DELAY_MS,
                    "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"],
                    "p50_over_ms": m["p50_ms"] - DELAY_MS, "p99_over_ms": m["p99_ms"] - DELAY_MS,
                    "floor_p50_ms": floor.get("p50_ms"),
                }

        sizes = {k: p.stat().st_size for k, p in wasm.items()}
        suite = next((r for r in ratios if r["scenario"] == "S5"), None)
        native = next((r for r in ratios if r["weft"] == "s5-weft-suite-native"), None)
        targets = {
            "suite_added_cpu_ratio": {"value": suite["added_cpu_weft_over_native"] if suite else None,
                                      "target": f"<= {TARGETS['suite_added_cpu_ratio_max']}"},
            "suite_throughput_vs_router": {"value": suite["rps_weft_over_router"] if suite else None,
                                           "target": f">= {TARGETS['suite_throughput_vs_router_min']}"},
            "suite_capacity_vs_router": {"value": suite["capacity_weft_over_router"] if suite else None,
                                         "target": f">= {TARGETS['suite_throughput_vs_router_min']}"},
            "native_module_added_cpu_ratio": {
                "value": native["added_cpu_weft_over_native"] if native else None,
                "target": f"<= {TARGETS['native_module_added_cpu_ratio_max']}"},
            "native_module_capacity_vs_router": {
                "value": native["capacity_weft_over_router"] if native else None,
                "target": f">= {TARGETS['suite_throughput_vs_router_min']}"},
            "artifact_kb": {k: {"value": round(sizes[k] / 1024, 1), "target": f"<= {v}"}
                            for k, v in TARGETS["artifact_kb_max"].items()},
        }
        return {
            "meta": self.meta(started_at, load_before, elapsed),
            "options": {"reps": a.reps, "duration_s": a.duration, "warmup_s": a.warmup, "conns": a.conns,
                        "paced_conns": a.paced_conns, "rate": a.rate, "quick": a.quick,
                        "envoy_core": self.envoy_core, "load_core": self.load_core,
                        "request": {"method": "GET", "path": REQUEST_PATH, "headers": REQUEST_HEADERS},
                        "delay_ms": DELAY_MS},
            "artifact_bytes": sizes,
            "targets": targets,
            "ratios": ratios,
            "delay_accuracy": delay_acc,
            "variants": per,
        }

    def meta(self, started_at, load_before, elapsed) -> dict:
        def sh(*a: str) -> str:
            try:
                return subprocess.run(list(a), capture_output=True, text=True, cwd=ROOT, timeout=20).stdout.strip()
            except Exception:  # noqa: BLE001
                return ""

        cpu = ""
        try:
            cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        except StopIteration:
            pass
        mem_kb = proc_status_kb_file("/proc/meminfo", "MemTotal")
        version = sh(str(self.envoy), "--version")
        m = re.search(r"/(\d+\.\d+\.\d+)/", version)
        return {
            "commit": sh("git", "rev-parse", "HEAD"),
            "commit_short": sh("git", "rev-parse", "--short", "HEAD"),
            # The benchmark's own outputs (configs/ is written before this) do not count.
            "worktree_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no", "--",
                                      ".", ":(exclude)bench/results")),
            "started_utc": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "elapsed_s": round(elapsed, 1),
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem_kb / 1024 / 1024, 1),
                        "kernel": platform.release(), "hostname": platform.node()},
            "envoy": m.group(1) if m else version,
            "envoy_version_string": version,
            "wrk": sh("wrk", "-v").splitlines()[0] if sh("wrk", "-v") else "",
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }


def proc_status_kb_file(path: str, key: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------------------------
# Report


def f(x, fmt="{:.2f}", none="–"):
    return none if x is None else fmt.format(x)


def ratios_table(res: dict) -> str:
    lines = [
        "| scenario | weft vs native | Envoy CPU µs/req added over router-only, weft / native | added-CPU ratio "
        "| Envoy-core capacity weft/native | … weft/router-only | wrk saturation weft/native | … weft/router-only "
        f"| p99 @ {res['options']['rate']} req/s weft/native |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["ratios"]:
        lines.append(
            f"| {r['scenario']} | {r['label']} | {f(r['weft_added_cpu_us'], '{:+.1f}')} / "
            f"{f(r['native_added_cpu_us'], '{:+.1f}')} | {added_ratio(r)} | "
            f"{f(r['capacity_weft_over_native'])} | {f(r['capacity_weft_over_router'])} | "
            f"{f(r['rps_weft_over_native'])} | {f(r['rps_weft_over_router'])} | {f(r['p99_weft_over_native'])} |")
    return "\n".join(lines)


def added_ratio(r: dict) -> str:
    if r["added_cpu_weft_over_native"] is not None:
        return f"{r['added_cpu_weft_over_native']:.1f}×"
    if r["native"] and r["native_added_cpu_us"] is not None:
        return f"n/a (native < {MIN_NATIVE_ADDED_US:.0f} µs)"
    return "–"


def targets_lines(res: dict) -> str:
    t = res["targets"]
    s = t["suite_added_cpu_ratio"]["value"]
    th = t["suite_throughput_vs_router"]["value"]
    suite = next((r for r in res["ratios"] if r["scenario"] == "S5"), None)
    out = []
    if suite:
        out.append(f"- whole suite (S5) adds {f(suite['weft_added_cpu_us'], '{:.1f}')} µs/request of Envoy CPU where the "
                   f"native filters add {f(suite['native_added_cpu_us'], '{:.1f}')} µs: **{added_ratio(suite)}** "
                   f"(target ≤ {TARGETS['suite_added_cpu_ratio_max']:.0f}×)")
        cap = t["suite_capacity_vs_router"]["value"]
        out.append(f"- whole suite keeps **{f(cap, '{:.0%}')}** of router-only Envoy-core capacity (1 / CPU per "
                   f"request) and {f(th, '{:.0%}')} of router-only wrk saturation throughput "
                   f"(target ≥ {TARGETS['suite_throughput_vs_router_min']:.0%})")
    native = next((r for r in res["ratios"] if r["weft"] == "s5-weft-suite-native"), None)
    if native:
        cap = t.get("native_module_capacity_vs_router", {}).get("value")
        out.append(f"- whole suite as the native module (libweft_suite.so) adds "
                   f"{f(native['weft_added_cpu_us'], '{:.1f}')} µs/request: **{added_ratio(native)}** the native "
                   f"filters (target ≤ {TARGETS['native_module_added_cpu_ratio_max']}×) and keeps "
                   f"**{f(cap, '{:.0%}')}** of router-only capacity (target ≥ "
                   f"{TARGETS['suite_throughput_vs_router_min']:.0%})")
    sizes = ", ".join(f"{k} {v['value']:.0f} KiB (≤ {v['target'].split()[-1]})" for k, v in t["artifact_kb"].items())
    out.append(f"- artifacts: {sizes}")
    return "\n".join(out)


def stamp(res: dict) -> str:
    m, o = res["meta"], res["options"]
    dirty = " + uncommitted changes" if m["worktree_dirty"] else ""
    return (f"commit `{m['commit_short']}`{dirty} · {m['started_utc']} · {m['machine']['cpu']} × "
            f"{m['machine']['cores']} cores · Linux {m['machine']['kernel']} · Envoy {m['envoy']} · "
            f"{o['reps']} interleaved repetition{'s' if o['reps'] != 1 else ''} × {o['duration_s']:g} s per run{' (--quick)' if o['quick'] else ''} · "
            f"1-min load average {m['loadavg_before'][0]} before the run, {m['loadavg_after'][0]} at its end "
            f"(the benchmark itself keeps about 2 busy)")


def spread(m: dict) -> str:
    if m.get("cpu_us_per_req_min") is None:
        return "–"
    return f"{m['cpu_us_per_req_min']:.1f}–{m['cpu_us_per_req_max']:.1f}"


def markdown(res: dict) -> str:
    o = res["options"]
    lines = [
        "# weft data-plane benchmark",
        "",
        f"Generated by `scripts/bench` — {stamp(res)}. Raw numbers: [latest.json](latest.json); the Envoy "
        "bootstraps measured: [configs/](configs/).",
        "",
        "## Ratios (medians)",
        "",
        ratios_table(res),
        "",
        "## Targets (reported, not asserted)",
        "",
        targets_lines(res),
        "",
        "## Per variant (medians)",
        "",
        f"Saturation: wrk, 1 thread, {o['conns']} connections, closed loop. Paced: wrk with a Lua pacer at "
        f"{o['rate']} req/s over {o['paced_conns']} connections; latency as seen by wrk.",
        "",
        "| scenario | variant | Envoy CPU µs/req | min–max over reps | + over router-only | Envoy-core capacity req/s | wrk saturation req/s "
        "| Envoy core busy | paced req/s | paced CPU µs/req | p50 ms | p99 ms | RSS MB | wasm VMs | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    floors = {v["scenario"]: v["median"]["cpu_us_per_req"] for v in res["variants"].values() if v["role"] == "floor"}
    for name, v in res["variants"].items():
        m = v["median"]
        fl = floors.get(v["scenario"])
        added = (m["cpu_us_per_req"] - fl) if (m["cpu_us_per_req"] is not None and fl is not None and v["role"] != "floor") else None
        lines.append(
            f"| {v['scenario']} | {name} | {f(m['cpu_us_per_req'], '{:.1f}')} | "
            f"{spread(m)} | {f(added, '{:+.1f}')} | "
            f"{f(m['capacity_rps'], '{:,.0f}')} | {f(m['saturation_rps'], '{:,.0f}')} | {f(m['envoy_core_busy'], '{:.0%}')} | {f(m['paced_rps'], '{:,.0f}')} | "
            f"{f(m['paced_cpu_us_per_req'], '{:.1f}')} | {f(m['p50_ms'], '{:.2f}')} | {f(m['p99_ms'], '{:.2f}')} | "
            f"{v['rss_mb']:.0f} | {v['wasm_vms_active']} | {v['errors']} |")
    if res["delay_accuracy"]:
        lines += ["", f"## Delay accuracy ({DELAY_MS} ms injected into 100 % of paced requests)", "",
                  "| variant | p50 ms | p99 ms | p50 − delay | p99 − delay |", "| --- | --- | --- | --- | --- |"]
        for k, d in res["delay_accuracy"].items():
            lines.append(f"| {k} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['p50_over_ms']:+.2f} | {d['p99_over_ms']:+.2f} |")
    lines += ["", "## Variants", ""]
    for name, v in res["variants"].items():
        lines.append(f"- `{name}`{' (mTLS)' if v['mtls'] else ''}: {v['description']}")
    lines += ["", "## How it is measured", "", METHOD, ""]
    return "\n".join(lines)


METHOD = """\
- One Envoy process per variant, all from the same binary, `--concurrency 1`, pinned with `taskset` to the
  Envoy core; wrk, the two upstreams (`weft-test-service` v1 and v2) and, for S1, the caller's sidecar
  Envoy (which originates mTLS with a SPIFFE client certificate made by openssl) are pinned to the other
  core. All traffic is on 127.0.0.1; no containers.
- A scenario's Envoys run side by side on their own ports and are measured interleaved (A B C A B C …);
  each repetition is one saturation run then one paced run per variant; figures are medians over the
  repetitions. Every variant is checked first: 200 for the benchmark request, 403 for `/admin/x` where a
  policy denies it, the filter's own stats counting, and for the breakers a trip check (rounds of 20 upstream 503s, at most 3,
  must open the weft breaker / eject the host for native outlier detection, then it must recover).
- Envoy CPU µs/req = (utime + stime of the Envoy process, all threads, from `/proc/<pid>/stat`) over the
  saturation run divided by the requests wrk completed in it ("paced CPU" is the same over the paced run,
  where every request pays its own event-loop wake-ups). "+ over router-only" subtracts the router-only
  variant of the same scenario; the added-CPU ratio divides weft's addition by native's.
- Envoy-core capacity = 10⁶ / (CPU µs per request): what one Envoy core could serve. wrk saturation is what
  the closed loop (1 thread, fixed connections) reached; "Envoy core busy" (Envoy CPU time over wall time
  during it) below ~90 % means the load core (wrk + upstreams + caller sidecar) was the bottleneck.
- Paced: wrk with a Lua pacer (a shared send schedule at a fixed aggregate rate, ms resolution; latency is
  measured from each actual send, so queueing behind a busy connection is not counted: keep the rate
  below the knee).
- RSS is `VmRSS` from `/proc/<pid>/status` after the runs; wasm VMs is Envoy's
  `wasm.envoy.wasm.runtime.v8.active` gauge.
"""


def write_readme(res: dict) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    block = "\n".join([
        start,
        f"_{stamp(res)}; full table and method in [bench/results/latest.md](bench/results/latest.md)._",
        "",
        ratios_table(res),
        "",
        targets_lines(res),
        end,
    ])
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        placeholder = "Measured figures live in the issue notes until the benchmark suite (`scripts/bench`) lands."
        if placeholder in text:
            text = text.replace(placeholder, "Run `scripts/bench` (about 10 minutes; `--quick` about 2) to refresh.\n\n"
                                + block)
        elif "## Performance" in text:
            text = text.replace("## Performance\n", "## Performance\n\n" + block + "\n", 1)
        else:
            log("README.md has no '## Performance' section: not updated")
            return
    readme.write_text(text)


def wait_quiet(max_load: float, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while True:
        l1 = os.getloadavg()[0]
        if l1 <= max_load:
            log(f"load average {l1:.2f} <= {max_load}")
            return
        if time.monotonic() >= deadline:
            log(f"load average still {l1:.2f} after {max_wait:.0f} s: running anyway (noted in the results)")
            return
        log(f"load average {l1:.2f} > {max_load}: waiting (up to {deadline - time.monotonic():.0f} s more)")
        time.sleep(15)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 repetition (about 2 minutes)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default 5, quick 1)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per wrk run (default 2)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, default=16, help="wrk connections in saturation runs")
    p.add_argument("--paced-conns", type=int, default=64,
                   help="wrk connections in paced runs (enough for 100 %% of requests held 20 ms)")
    p.add_argument("--rate", type=int, default=2000, help="paced request rate, req/s (below the knee)")
    p.add_argument("--scenarios", help="comma-separated subset, e.g. S0,S5")
    p.add_argument("--port-base", type=int, default=18000)
    p.add_argument("--envoy", default=str(ROOT / ".weft" / "envoy" / "1.40.0" / "envoy"))
    p.add_argument("--envoy-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--no-readme", action="store_true", help="do not update README.md")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to drop below --max-load")
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--baseline-suite", type=Path, metavar="WASM",
                   help="also run S5's suite with this earlier suite.wasm (row 'whole suite, one module, before')")
    p.add_argument("--baseline-waf", type=Path, metavar="WASM",
                   help="also run S6 with this earlier waf.wasm (rows 'edge WAF, ..., before')")
    p.add_argument("--baseline-native", type=Path, metavar="SO",
                   help="also run S5's native module with this earlier libweft_suite.so (the file must be named "
                        "so; its directory becomes that Envoy's module search path)")
    p.add_argument("--perf", default="", metavar="VARIANTS",
                   help="comma-separated variants to profile after the repetitions (perf record -e cpu-clock -g "
                        "-p <envoy> over one saturation run; report in <out>/perf/)")
    p.add_argument("--perf-secs", type=float, default=20.0, help="seconds of load under perf (default 20)")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: render latest.md and the README section again from latest.json")
    a = p.parse_args()
    if a.report_only:
        res = json.loads((a.out / "latest.json").read_text())
        (a.out / "latest.md").write_text(markdown(res))
        if not a.no_readme:
            write_readme(res)
        log(f"rendered {a.out / 'latest.md'} from latest.json")
        return 0
    a.reps = a.reps or (1 if a.quick else 5)
    a.perf = {x for x in a.perf.split(",") if x}
    if a.baseline_native and a.baseline_native.name != NATIVE_MODULE.name:
        raise SystemExit(f"--baseline-native: Envoy loads the module by name; the file must be {NATIVE_MODULE.name}")
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 cores: no pinning")
        a.envoy_core = a.load_core = None
    a.out.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.wait_quiet > 0:
        wait_quiet(a.max_load, a.wait_quiet)
    bench = Bench(a)
    try:
        res = bench.run()
    finally:
        PROCS.stop_all()
    (a.out / "latest.json").write_text(json.dumps(res, indent=1) + "\n")
    (a.out / "latest.md").write_text(markdown(res))
    if not a.no_readme:
        write_readme(res)
    shutil.rmtree(bench.tmp, ignore_errors=True)
    print(markdown(res))
    log(f"wrote {a.out / 'latest.md'} and latest.json in {res['meta']['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
