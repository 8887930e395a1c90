#!/usr/bin/env python3
"""Stepped scale-request caller for bench/kube_scale.ts, on the real ai-dynamo-runtime 1.6.1.

Usage:
  kube_scale_driver.py --endpoint ns.GlobalPlanner.scale_request --caller NS --dgd NAME --k8s-namespace NS
                       [--startup-timeout S] [--request-timeout S]

One request per stdin line. Each line is JSON: {"prefill": P, "decode": D} (an empty line or EOF ends).
A line {"batch": [{"dgd": NAME, "prefill": P, "decode": D}, ...], "blocking": true} sends all of them at
once (one task each) and prints one {"result": {..., "dgd": NAME, "answer_epoch_ms": ..}} per request as
it is answered, then {"batch_done": true} (bench/phases/blocking.ts).
Each request is a ScaleRequest built with upstream's pydantic model (dynamo.planner.connectors.protocol),
blocking=False, sent as `model_dump_json()` -- exactly what RemotePlannerClient sends.

Output (JSON lines on stdout):
  {"ready": true}                                 runtime up, an instance of the endpoint is known
  {"result": {"ms": .., "status": .., "message": .., "current_replicas": {..}}}   one per request
  {"result": {"ms": .., "error": ".."}}           the call raised / no answer within --request-timeout
  {"done": true}
Latency = from just before client.generate() to the end of the response stream.
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


async def run(args):
    from dynamo.planner.connectors.protocol import ScaleRequest, TargetReplica
    from dynamo.runtime import DistributedRuntime

    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    try:
        client = await runtime.endpoint(args.endpoint).client()
        try:
            await asyncio.wait_for(client.wait_for_instances(), timeout=args.startup_timeout)
        except asyncio.TimeoutError:
            out({"exception": "TimeoutError", "message": f"no instance of {args.endpoint}"})
            return 2
        out({"ready": True})
        async def one(want, blocking, dgd):
            targets = [
                TargetReplica(sub_component_type=role, desired_replicas=int(want[role]))
                for role in ("prefill", "decode")
                if role in want
            ]
            request = ScaleRequest(
                caller_namespace=want.get("caller", args.caller),
                graph_deployment_name=dgd,
                k8s_namespace=args.k8s_namespace,
                target_replicas=targets,
                blocking=blocking,
                timestamp=time.time(),
            ).model_dump_json()

            async def go():
                items = []
                stream = await client.generate(request)
                async for x in stream:
                    items.append(x.data() if hasattr(x, "data") else x)
                return items

            t = time.perf_counter()
            try:
                items = await asyncio.wait_for(go(), timeout=args.request_timeout)
                ms = (time.perf_counter() - t) * 1000.0
                first = items[0] if items else {}
                if not isinstance(first, dict):
                    first = {"status": None, "message": repr(first)}
                out({"result": {"ms": round(ms, 3), "status": first.get("status"),
                                "message": first.get("message"), "dgd": dgd,
                                "answer_epoch_ms": time.time() * 1000.0,
                                "current_replicas": first.get("current_replicas")}})
            except Exception as e:
                ms = (time.perf_counter() - t) * 1000.0
                out({"result": {"ms": round(ms, 3), "dgd": dgd, "error": f"{type(e).__name__}: {e}"}})

        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            want = json.loads(line)
            if "batch" in want:
                blocking = bool(want.get("blocking", False))
                await asyncio.gather(*(one(w, blocking, w["dgd"]) for w in want["batch"]))
                out({"batch_done": True})
                continue
            await one(want, False, args.dgd)
        out({"done": True})
        return 0
    finally:
        runtime.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--caller", required=True)
    ap.add_argument("--dgd", required=True)
    ap.add_argument("--k8s-namespace", required=True)
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
