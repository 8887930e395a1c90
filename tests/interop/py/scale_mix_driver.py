#!/usr/bin/env python3
"""Many planners on one real ai-dynamo-runtime 1.6.1 DistributedRuntime, for bench/phases/scale.ts.

Usage:
  scale_mix_driver.py --namespace GP_NS --plan FILE [--startup-timeout S] [--request-timeout S]

FILE (JSON): {"planners": [{"caller": C, "dgds": [{"name": N, "k8s_namespace": NS, "prefill": P,
"decode": D}, ...]}, ...], "requests": R, "think_ms": T, "seed": S, "max_decode": M,
"reject_decode": X, "warm_concurrency": W, "mix": {"up": w, "down": w, "same": w, "reject": w, "health": w}}

One asyncio task per planner. Each request is upstream's `ScaleRequest(...).model_dump_json()`
(non-blocking), as RemotePlannerClient sends it, or a health call. Kinds, per planner, on one of
its DGDs (the planner tracks each DGD's replicas from its own answers):
  up      decode + 1 (down instead at max_decode)      down  decode - 1 (up instead at 1)
  same    the replicas the DGD has (skip-if-equal)      reject  decode = reject_decode (over the budget)
  health  the health endpoint

Protocol (JSON lines on stdout; stdin lines are commands):
  {"ready": true}               both endpoints have an instance
  stdin "health" -> every planner sends one health request -> {"health": {summary}}
  stdin "warm"  -> every planner sends `same` once per DGD, at most warm_concurrency in flight
                   over all planners (first requests are each read once) -> {"warm": {summary}}
  stdin "load"  -> every planner sends R requests of the mix, T ms mean think time between them
                   -> {"load": {summary}}
  stdin "" / EOF -> {"done": true}
summary = {"counts": {kind: {status: n}}, "lost": n, "lost_examples": [...], "e2e_ms": {kind:
[p50, p99]}, "requests": n, "wall_s": s}. An answer is lost when the call raised, timed out or
the stream ended without an item; an answer with status "error" is an answer.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 3)


class Phase:
    def __init__(self):
        self.counts = {}
        self.lost = 0
        self.lost_examples = []
        self.error_examples = []
        self.ms = {}

    def record(self, kind, status, ms):
        by = self.counts.setdefault(kind, {})
        by[status] = by.get(status, 0) + 1
        self.ms.setdefault(kind, []).append(ms)

    def lose(self, kind, text):
        self.lost += 1
        if len(self.lost_examples) < 5:
            self.lost_examples.append(f"{kind}: {text}")

    def summary(self, wall):
        return {
            "counts": self.counts,
            "lost": self.lost,
            "lost_examples": self.lost_examples,
            "error_examples": self.error_examples,
            "e2e_ms": {k: [pct(v, 50), pct(v, 99)] for k, v in self.ms.items()},
            "requests": sum(sum(v.values()) for v in self.counts.values()) + self.lost,
            "wall_s": round(wall, 3),
        }


async def run(args):
    from dynamo.planner.connectors.protocol import ScaleRequest, TargetReplica
    from dynamo.runtime import DistributedRuntime

    with open(args.plan) as f:
        plan = json.load(f)
    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    try:
        scale = await runtime.endpoint(f"{args.namespace}.GlobalPlanner.scale_request").client()
        health = await runtime.endpoint(f"{args.namespace}.GlobalPlanner.health").client()
        try:
            await asyncio.wait_for(
                asyncio.gather(scale.wait_for_instances(), health.wait_for_instances()),
                timeout=args.startup_timeout,
            )
        except asyncio.TimeoutError:
            out({"exception": "TimeoutError", "message": f"no instance in {args.namespace}"})
            return 2
        out({"ready": True})

        async def call(client, payload):
            items = []
            stream = await client.generate(payload)
            async for x in stream:
                items.append(x.data() if hasattr(x, "data") else x)
            return items

        async def send(phase, caller, dgd, kind, decode):
            t = time.perf_counter()
            try:
                if kind == "health":
                    items = await asyncio.wait_for(call(health, "{}"), timeout=args.request_timeout)
                    ms = (time.perf_counter() - t) * 1000.0
                    if not items:
                        phase.lose(kind, "empty stream")
                        return
                    first = items[0]
                    phase.record(kind, first.get("status", "?") if isinstance(first, dict) else "?", ms)
                    return
                request = ScaleRequest(
                    caller_namespace=caller,
                    graph_deployment_name=dgd["name"],
                    k8s_namespace=dgd["k8s_namespace"],
                    target_replicas=[
                        TargetReplica(sub_component_type="prefill", desired_replicas=int(dgd["prefill"])),
                        TargetReplica(sub_component_type="decode", desired_replicas=int(decode)),
                    ],
                    blocking=False,
                    timestamp=time.time(),
                ).model_dump_json()
                items = await asyncio.wait_for(call(scale, request), timeout=args.request_timeout)
                ms = (time.perf_counter() - t) * 1000.0
                first = items[0] if items else None
                if not isinstance(first, dict) or "status" not in first:
                    phase.lose(kind, f"no answer item: {first!r}")
                    return
                status = first["status"]
                phase.record(kind, status, ms)
                now = (first.get("current_replicas") or {}).get("decode")
                if status == "success" and isinstance(now, int):
                    dgd["decode"] = now
                elif status == "error" and len(phase.error_examples) < 5:
                    # An error answer is an answer, but worth reading in the report.
                    phase.error_examples.append(f"{kind}: {first.get('message')}")
            except Exception as e:
                phase.lose(kind, f"{type(e).__name__}: {e}")

        kinds = list(plan["mix"].keys())
        weights = [plan["mix"][k] for k in kinds]
        max_decode = int(plan["max_decode"])

        gate = asyncio.Semaphore(int(plan.get("warm_concurrency", 8)))

        async def planner(phase, index, p, what):
            rng = random.Random(int(plan["seed"]) * 1000 + index)
            if what == "health":
                await send(phase, p["caller"], None, "health", 0)
                return
            if what == "warm":
                for dgd in p["dgds"]:
                    async with gate:
                        await send(phase, p["caller"], dgd, "same", dgd["decode"])
                return
            # Planners do not start in lock step.
            await asyncio.sleep(rng.random() * plan["think_ms"] / 1000.0)
            for _ in range(int(plan["requests"])):
                dgd = rng.choice(p["dgds"])
                kind = rng.choices(kinds, weights)[0]
                d = dgd["decode"]
                if kind == "up" and d >= max_decode:
                    kind = "down"
                elif kind == "down" and d <= 1:
                    kind = "up"
                decode = {"up": d + 1, "down": d - 1, "same": d, "reject": int(plan["reject_decode"])}.get(kind, 0)
                await send(phase, p["caller"], dgd, kind, decode)
                await asyncio.sleep(rng.expovariate(1.0) * plan["think_ms"] / 1000.0)

        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line not in ("health", "warm", "load"):
                break
            phase = Phase()
            t = time.perf_counter()
            await asyncio.gather(
                *(planner(phase, i, p, line) for i, p in enumerate(plan["planners"]))
            )
            out({line: phase.summary(time.perf_counter() - t)})
        out({"done": True})
        return 0
    finally:
        runtime.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--request-timeout", type=float, default=30.0)
    args = ap.parse_args()
    try:
        rc = asyncio.run(run(args))
    except Exception as e:
        out({"exception": type(e).__name__, "message": str(e), "fatal": True})
        rc = 1
    sys.stdout.flush()
    os._exit(rc)  # the Rust runtime may keep background threads alive


if __name__ == "__main__":
    main()
