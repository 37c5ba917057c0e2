#!/usr/bin/env python3
"""Instructions per request of a whole Envoy process, deterministically: `bench/run.py`'s
variants, one at a time, under `valgrind --tool=callgrind`.

CPU time per request (`bench/run.py`) moves by ±5 µs between identical runs on a shared
machine; the instructions Envoy executes for a request do not. Each variant's Envoy (the
bootstrap `run.py` builds, `--concurrency 1`) runs under callgrind; after a warm-up of
`--warmup` requests the counters are zeroed, `--small` requests are sent and the counters
dumped, then again with `--large`; per request = (Ir(large) − Ir(small)) / (large − small),
so start-up and time-based work (stats flush, timers) cancel. User space only (the kernel's
share of a request is not counted), all threads, Envoy and every library it loads, including
`libweft_suite.so` (whose own functions callgrind names when the module is built unstripped:
`--module-dir` of a build with `CARGO_PROFILE_RELEASE_STRIP=false`).

The wasm variants are not measured here: V8's generated code under valgrind is too slow to be
useful (use `percall_stages` for the stages' own instructions and `run.py` for CPU).

    bench/callgrind.py s5-router-only s5-native-all s5-weft-suite-native
    bench/callgrind.py --module-dir /tmp/before s5-weft-suite-native   # another build
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the variants and their bootstraps)


def drive(port: int, n: int) -> int:
    """`n` benchmark requests over 4 keep-alive connections; how many got 200."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(4)]
    ok = 0
    for i in range(n):
        c = conns[i % len(conns)]
        c.request("GET", run.REQUEST_PATH, headers=run.REQUEST_HEADERS)
        r = c.getresponse()
        r.read()
        ok += r.status == 200
    for c in conns:
        c.close()
    return ok


def total_ir(path: Path) -> int:
    out = subprocess.run(["callgrind_annotate", "--auto=no", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", out)
    if not m:
        raise SystemExit(f"no totals in {path}")
    return int(m.group(1).replace(",", ""))


def measure(v: run.Variant, cfg: dict, module_dir: Path, out: Path, a: argparse.Namespace) -> dict:
    cfg_path = out / f"{v.name}.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    prefix = out / f"{v.name}.callgrind"
    env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(module_dir)}
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", str(a.envoy), "-c",
            str(cfg_path), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]
    p = run.PROCS.start(v.name, argv, out / f"{v.name}.log", env=env)
    try:
        run.wait_until(f"{v.name} ready (under valgrind)",
                       lambda: p.poll() is None and run.http_get(v.admin_port, "/ready", timeout=5)[0] == 200,
                       300, 1.0)
        drive(v.listener_port, a.warmup)
        dumps = []
        sent = {}
        for label, n in (("small", a.small), ("large", a.large)):
            subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
            sent[label] = (n, drive(v.listener_port, n))
            subprocess.run(["callgrind_control", "-d", label, str(p.pid)], capture_output=True, check=True)
            dumps.append(label)
        time.sleep(0.5)
    finally:
        run.PROCS.stop(p)
    files = sorted(out.glob(f"{v.name}.callgrind.{p.pid}.*"), key=lambda f: int(f.suffix[1:]))
    if len(files) < 2:
        raise SystemExit(f"{v.name}: expected two callgrind dumps, found {files}")
    small, large = total_ir(files[0]), total_ir(files[1])
    per = (large - small) / (a.large - a.small)
    return {"variant": v.name, "module_dir": str(module_dir), "ok": sent, "ir_small": small, "ir_large": large,
            "ir_per_request": round(per), "dumps": [str(f) for f in files[:2]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="bench/run.py variant names (e.g. s5-weft-suite-native)")
    p.add_argument("--module-dir", type=Path, default=run.NATIVE_MODULE.parent,
                   help="where Envoy finds libweft_suite.so (default dist/filters)")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--large", type=int, default=3000)
    p.add_argument("--port-base", type=int, default=19000)
    p.add_argument("--envoy", type=Path, default=run.ROOT / ".weft" / "envoy" / "1.40.0" / "envoy")
    p.add_argument("--out", type=Path, help="keep the dumps here (default: a temporary directory)")
    a = p.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="weft-callgrind-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = {f: run.ROOT / "dist" / "filters" / f"{f}.wasm" for f in ("authz", "canary", "fault", "breaker",
                                                                        "suite", "waf")}
    paths["empty"] = run.BENCH / "empty-filter" / "target" / "wasm32-wasip1" / "release" / "weft_bench_empty_filter.wasm"
    variants, _ = run.scenarios(paths)
    by_name = {v.name: v for v in variants}
    unknown = [n for n in a.variants if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(by_name)}")
    if any(by_name[n].mtls or any("wasm" in json.dumps(f) for f in by_name[n].filters) for n in a.variants):
        raise SystemExit("only plaintext variants without wasm filters can be measured here")
    port_v1, port_v2 = a.port_base + 1, a.port_base + 2
    bench = run.Bench.__new__(run.Bench)
    bench.load_core, bench.tmp, bench.port_v1, bench.port_v2 = None, out, port_v1, port_v2
    results = []
    try:
        bench.start_upstreams()
        for i, name in enumerate(a.variants):
            v = by_name[name]
            v.listener_port, v.admin_port = a.port_base + 100 + i, a.port_base + 300 + i
            clusters = [run.cluster("v1", port_v1, v.clusters_extra), run.cluster("v2", port_v2, v.clusters_extra)]
            cfg = run.bootstrap(v.admin_port, v.listener_port, v.routes, v.filters, clusters, None)
            r = measure(v, cfg, a.module_dir.resolve(), out, a)
            run.log(f"{name}: {r['ir_per_request']:,} instructions per request ({r['ok']})")
            results.append(r)
    finally:
        run.PROCS.stop_all()
    (out / "callgrind.json").write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(f"{r['variant']:<32} {r['ir_per_request']:>9,} Ir/request   ({r['module_dir']})")
    run.log(f"dumps and results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
