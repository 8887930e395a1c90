#!/usr/bin/env python3
"""Concurrent load from real planners' runtime (ai-dynamo-runtime 1.6.1): C asyncio callers on ONE
DistributedRuntime / one endpoint client, N requests in total, per phase.

Usage:
  load_driver.py --endpoint ns.Comp.ep [--health-endpoint ns.Comp.health] [--poll-startup]
                 [--phases C:N[,C:N...]] [--warmup W] [--expect success|echo|any]
                 [--request-timeout S] [--deadline S] [--step]

Each request is a ScaleRequest built with upstream's pydantic model (dynamo.planner.connectors.protocol)
and sent as `request.model_dump_json()` -- a Python str, exactly what RemotePlannerClient sends
(falls back to an identical hand-made compact JSON if ai-dynamo is not importable).

Discovery backend / request plane come from DYN_DISCOVERY_BACKEND / DYN_REQUEST_PLANE (defaults etcd/tcp);
loopback runs need DYN_TCP_RESPONSE_STREAM_HOST=127.0.0.1.

Output (JSON lines on stdout):
  {"poller_ready": true}                       runtime up, clients created (before the server is started)
  {"startup": {"health_ok_epoch_ms": .., "scale_ok_epoch_ms": .., "both_ok_epoch_ms": .., "attempts": n}}
                                               with --poll-startup: first successful call of each endpoint
  {"phase": {"c":C,"n":N,"ok":..,"failed":..,"lost":..,"total_s":..,"rps":..,"p50_ms":..,"p90_ms":..,
             "p99_ms":..,"max_ms":..,"first_error":..}}    one per phase (warm-up requests not included)
  {"done": true}
  failed = the call raised or the answer was not the expected one; lost = no item / no end within
  --request-timeout.
With --step the driver reads one line from stdin before each phase after the first (the bench samples
the server's memory in between, while nothing is in flight).
Exit codes: 0 ran, 2 startup poll deadline passed, 3 --deadline elapsed, 1 unexpected failure.
"""
import argparse
import asyncio
import json
import os
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


def request_factory():
    """Returns a function building one ScaleRequest JSON text the way a planner does."""
    try:
        from dynamo.planner.connectors.protocol import ScaleRequest, TargetReplica

        def make(i):
            return ScaleRequest(
                caller_namespace="bench-caller",
                graph_deployment_name="bench-dgd",
                k8s_namespace="default",
                target_replicas=[
                    TargetReplica(sub_component_type="prefill", desired_replicas=1 + i % 3),
                    TargetReplica(sub_component_type="decode", desired_replicas=2 + i % 2),
                ],
                blocking=False,
                timestamp=time.time(),
            ).model_dump_json()

        return make, "pydantic"
    except Exception:  # ai-dynamo not installed: same bytes by hand
        def make(i):
            return json.dumps({
                "caller_namespace": "bench-caller", "graph_deployment_name": "bench-dgd",
                "k8s_namespace": "default",
                "target_replicas": [
                    {"sub_component_type": "prefill", "component_name": None, "desired_replicas": 1 + i % 3},
                    {"sub_component_type": "decode", "component_name": None, "desired_replicas": 2 + i % 2},
                ],
                "blocking": False, "timestamp": time.time(), "predicted_load": None,
            }, separators=(",", ":"))

        return make, "manual"


class Lost(Exception):
    pass


async def one_call(client, request, expect, timeout):
    async def go():
        items = []
        stream = await client.generate(request)
        async for x in stream:
            items.append(x.data() if hasattr(x, "data") else x)
        return items

    try:
        items = await asyncio.wait_for(go(), timeout=timeout)
    except asyncio.TimeoutError:
        raise Lost(f"no complete answer within {timeout}s")
    if not items:
        raise Lost("stream ended without an item")
    first = items[0]
    if expect == "success":
        if not isinstance(first, dict) or first.get("status") != "success":
            raise ValueError(f"unexpected answer {first!r}")
    elif expect == "echo":
        if first != request:
            raise ValueError(f"echo mismatch {first!r}")
    return first


def pct(sorted_ms, p):
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100.0 * (len(sorted_ms) - 1))))], 3)


async def run_phase(client, make, c, n, expect, timeout):
    lat = []
    failed = 0
    lost = 0
    first_error = None
    issued = 0

    async def worker():
        nonlocal issued, failed, lost, first_error
        while issued < n:
            i = issued
            issued += 1
            request = make(i)
            t = time.perf_counter()
            try:
                await one_call(client, request, expect, timeout)
                lat.append((time.perf_counter() - t) * 1000.0)
            except Lost as e:
                lost += 1
                first_error = first_error or f"lost: {e}"
            except Exception as e:
                failed += 1
                first_error = first_error or f"{type(e).__name__}: {e}"

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(max(1, min(c, n)))])
    total = time.perf_counter() - t0
    lat.sort()
    return {
        "c": c, "n": n, "ok": len(lat), "failed": failed, "lost": lost, "total_s": round(total, 4),
        "rps": round(len(lat) / total, 1) if total > 0 else None,
        "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
        "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100),
        "first_error": first_error,
    }


async def poll_until_ok(client, request, expect, deadline):
    """Calls until one call succeeds; returns (epoch ms of success, attempts)."""
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            remaining = max(0.05, deadline - time.monotonic())
            await asyncio.wait_for(client.wait_for_instances(), timeout=remaining)
            await one_call(client, request, expect, min(2.0, remaining))
            return time.time() * 1000.0, attempts
        except Exception:
            await asyncio.sleep(0.005)
    return None, attempts


async def run(args):
    from dynamo.runtime import DistributedRuntime

    make, how = request_factory()
    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    try:
        client = await runtime.endpoint(args.endpoint).client()
        health = await runtime.endpoint(args.health_endpoint).client() if args.health_endpoint else None
        out({"poller_ready": True, "request_builder": how})

        if args.poll_startup:
            deadline = time.monotonic() + args.startup_timeout
            expect_health = "any"
            tasks = [poll_until_ok(client, make(0), args.expect, deadline)]
            if health:
                tasks.append(poll_until_ok(health, {"text": "health"}, expect_health, deadline))
            results = await asyncio.gather(*tasks)
            if any(r[0] is None for r in results):
                out({"exception": "TimeoutError", "message": "startup poll deadline passed"})
                return 2
            scale_ok = results[0][0]
            health_ok = results[1][0] if health else None
            out({"startup": {
                "scale_ok_epoch_ms": scale_ok, "health_ok_epoch_ms": health_ok,
                "both_ok_epoch_ms": max(r[0] for r in results), "attempts": sum(r[1] for r in results),
            }})
        else:
            try:
                await asyncio.wait_for(client.wait_for_instances(), timeout=args.startup_timeout)
            except asyncio.TimeoutError:
                out({"exception": "TimeoutError", "message": f"no instance of {args.endpoint}"})
                return 2

        if args.warmup > 0:
            await run_phase(client, make, 1, args.warmup, args.expect, args.request_timeout)
        for k, spec in enumerate(p for p in args.phases.split(",") if p):
            if args.step and k > 0:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
            c, n = (int(x) for x in spec.split(":"))
            out({"phase": await run_phase(client, make, c, n, args.expect, args.request_timeout)})
        out({"done": True})
        return 0
    finally:
        runtime.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--health-endpoint", default=None)
    ap.add_argument("--poll-startup", action="store_true")
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--phases", default="")
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--expect", default="any", choices=["success", "echo", "any"])
    ap.add_argument("--request-timeout", type=float, default=10.0)
    ap.add_argument("--deadline", type=float, default=600.0, help="overall timeout in seconds")
    ap.add_argument("--step", action="store_true")
    args = ap.parse_args()

    async def guarded():
        try:
            return await asyncio.wait_for(run(args), timeout=args.deadline)
        except asyncio.TimeoutError:
            out({"exception": "TimeoutError", "message": f"overall deadline {args.deadline}s elapsed"})
            return 3

    try:
        rc = asyncio.run(guarded())
    except Exception as e:
        out({"exception": type(e).__name__, "message": str(e), "fatal": True})
        rc = 1
    sys.stdout.flush()
    os._exit(rc)  # the Rust runtime may keep background threads alive


if __name__ == "__main__":
    main()
