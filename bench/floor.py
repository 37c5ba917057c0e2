#!/usr/bin/env python3
"""Where the empty wasm filter's cost goes (docs/wasm-floor.md).

Runs one Envoy at a time (--concurrency 1, pinned to --envoy-core) with the same request as
bench/run.py, in four shapes: router-only and the empty Rust proxy-wasm filter, each with an
upstream (the benchmark's) and with a `direct_response` route (the earlier spike's shape: no
upstream, no response body from one). Prints Envoy CPU µs per request of each (schedstat,
like run.py) and, for the empty filter with an upstream, `perf record -e cpu-clock -g` split
into Envoy's text and V8's generated code. Needs the built empty filter and test service
(scripts/bench builds them). Bounded: each shape runs --secs of wrk after a 1 s warm-up.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the benchmark's helpers: configs, processes, wrk)

DIRECT = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]
UPSTREAM = [{"match": {"prefix": "/"}, "route": {"cluster": "v1"}}]


def measure(a, name: str, routes: list, filters: list, tmp: Path, perf: bool) -> dict:
    listener, admin = a.port_base + 10, a.port_base + 11
    config = run.bootstrap(admin, listener, routes, filters, [run.cluster("v1", a.port_base + 1)])
    path = tmp / f"{name}.json"
    path.write_text(run.json.dumps(config))
    argv = ["taskset", "-c", str(a.envoy_core), a.envoy, "-c", str(path), "--concurrency", "1",
            "--disable-hot-restart", "-l", "warning"]
    p = run.PROCS.start(name, argv, tmp / f"{name}.log")
    try:
        run.wait_until(name, lambda: run.http_get(listener, "/")[0] == 200, 30)
        run.wrk(listener, a.load_core, a.conns, 1, a.lua)
        t0 = run.sched_ns(p.pid)
        rec = None
        if perf:
            rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-g", "-p", str(p.pid), "-o",
                                    str(tmp / "perf.data"), "--", "sleep", str(a.secs)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = run.wrk(listener, a.load_core, a.conns, a.secs, a.lua)
        cpu_ns = run.sched_ns(p.pid) - t0
        if rec:
            rec.wait(timeout=a.secs + 30)
        us = cpu_ns / 1000 / max(1, r["requests"])
        split = perf_split(tmp) if perf else {}
        return {"name": name, "requests": r["requests"], "us_per_req": us,
                "split": {dso: share * us for dso, share in split.items()}}
    finally:
        run.PROCS.stop(p)


def perf_split(tmp: Path) -> dict[str, float]:
    """Share of samples by DSO: Envoy's text, V8's generated code (`[JIT]`), kernel, libc."""
    out = subprocess.run(["perf", "report", "-i", str(tmp / "perf.data"), "--stdio", "--no-children",
                          "--sort", "dso", "-g", "none"], capture_output=True, text=True, timeout=120)
    shares: dict[str, float] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%") and not line.startswith("#"):
            dso = "[JIT]" if parts[1] == "[JIT]" else parts[1]
            shares[dso] = shares.get(dso, 0.0) + float(parts[0].rstrip("%")) / 100
    return shares


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envoy", default=str(run.ROOT / ".weft" / "envoy" / "1.40.0" / "envoy"))
    p.add_argument("--envoy-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--secs", type=float, default=5.0)
    p.add_argument("--port-base", type=int, default=28000)
    a = p.parse_args()
    empty = run.BENCH / "empty-filter" / "target" / "wasm32-wasip1" / "release" / "weft_bench_empty_filter.wasm"
    exe = run.ROOT / "target" / "release" / "weft-test-service"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        a.lua = tmp / "done.lua"
        a.lua.write_text(run.LUA_DONE)
        env = dict(run.os.environ, SERVICE_NAME="reviews", SERVICE_VERSION="v1", PORT=str(a.port_base + 1))
        up = run.PROCS.start("upstream", ["taskset", "-c", str(a.load_core), str(exe)], tmp / "up.log", env=env)
        try:
            run.wait_until("upstream", lambda: run.http_get(a.port_base + 1, "/")[0] == 200, 20)
            wasm = [run.wasm_filter("bench.empty", empty, None)]
            rows = [
                measure(a, "router-only, upstream", UPSTREAM, [], tmp, True),
                measure(a, "empty wasm, upstream", UPSTREAM, wasm, tmp, True),
                measure(a, "router-only, direct_response", DIRECT, [], tmp, True),
                measure(a, "empty wasm, direct_response", DIRECT, wasm, tmp, True),
            ]
        finally:
            run.PROCS.stop(up)
    print("Envoy CPU µs per request, and its split by where perf's cpu-clock samples fell")
    for r in rows:
        split = ", ".join(f"{dso} {us:.2f}" for dso, us in sorted(r["split"].items(), key=lambda x: -x[1])
                          if us >= 0.05)
        print(f"{r['name']:<30} {r['us_per_req']:7.2f}  ({r['requests']} requests; {split})")
    print(f"empty filter adds {rows[1]['us_per_req'] - rows[0]['us_per_req']:.2f} µs with an upstream, "
          f"{rows[3]['us_per_req'] - rows[2]['us_per_req']:.2f} µs with direct_response")
    return 0


if __name__ == "__main__":
    sys.exit(main())
