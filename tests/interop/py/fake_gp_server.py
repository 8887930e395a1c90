#!/usr/bin/env python3
"""A tiny Global Planner look-alike on the real 1.6.1 runtime (documentation / driver testing only).

Serves {ns}.GlobalPlanner.scale_request (wrapped in dynamo_endpoint(ScaleRequest, ScaleResponse)
exactly like upstream, so invalid requests produce the same error item) and {ns}.GlobalPlanner.health
(health_check_payload={"text":"health"}). The answer status is chosen with --status:
  success  -> {"status":"success","message":"Scaled <dgd> successfully","current_replicas":{role: desired}}
  rejected -> {"status":"rejected","message":"GPU budget breach: total 9 exceeds ceiling (8); no feasible pair packing","current_replicas":{}}
  error    -> {"status":"error","message":"fake failure","current_replicas":{}}
  scaling  -> {"status":"scaling","message":"in progress","current_replicas":{}}
  bogus    -> {"status":"bogus",...}   (not a ScaleStatus: planner-side pydantic fails)
  raise    -> the handler raises RuntimeError("fake crash")
--managed-namespaces A B gives the upstream authorization answer for other callers.
Usage: DYN_NAMESPACE=gp fake_gp_server.py [--status S] [--managed-namespaces ...] [--sleep S] [--exit-after S]
"""
import argparse
import asyncio
import json
import os
import signal
import sys

from dynamo.planner.connectors.protocol import ScaleRequest, ScaleResponse
from dynamo.runtime import DistributedRuntime, dynamo_endpoint


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--status", default="success",
                    choices=["success", "rejected", "error", "scaling", "bogus", "raise"])
    ap.add_argument("--managed-namespaces", nargs="+", default=None)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--exit-after", type=float, default=0.0)
    a = ap.parse_args()
    ns = os.environ.get("DYN_NAMESPACE")
    if not ns:
        raise SystemExit("DYN_NAMESPACE is required")
    loop = asyncio.get_running_loop()
    rt = DistributedRuntime(loop, os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
                            os.environ.get("DYN_REQUEST_PLANE", "tcp"))

    @dynamo_endpoint(ScaleRequest, ScaleResponse)
    async def scale_request(req: ScaleRequest):
        if a.managed_namespaces and req.caller_namespace not in a.managed_namespaces:
            yield {"status": "error", "message": f"Namespace {req.caller_namespace} not authorized",
                   "current_replicas": {}}
            return
        if a.sleep:
            await asyncio.sleep(a.sleep)
        if a.status == "raise":
            raise RuntimeError("fake crash")
        if a.status == "success":
            yield {"status": "success", "message": f"Scaled {req.graph_deployment_name} successfully",
                   "current_replicas": {t.sub_component_type.value: t.desired_replicas
                                        for t in req.target_replicas}}
        elif a.status == "rejected":
            yield {"status": "rejected", "current_replicas": {},
                   "message": "GPU budget breach: total 9 exceeds ceiling (8); no feasible pair packing"}
        elif a.status == "error":
            yield {"status": "error", "message": "fake failure", "current_replicas": {}}
        else:
            yield {"status": a.status, "message": "in progress", "current_replicas": {}}

    async def health(request):
        yield {"status": "healthy", "component": "GlobalPlanner", "namespace": ns,
               "managed_namespaces": a.managed_namespaces or "all"}

    tasks = [
        asyncio.ensure_future(rt.endpoint(f"{ns}.GlobalPlanner.scale_request").serve_endpoint(scale_request)),
        asyncio.ensure_future(rt.endpoint(f"{ns}.GlobalPlanner.health").serve_endpoint(
            health, health_check_payload={"text": "health"})),
    ]
    await asyncio.sleep(0.5)
    print(json.dumps({"ready": True, "namespace": ns}), flush=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    waiters = [asyncio.ensure_future(stop.wait())] + tasks
    if a.exit_after > 0:
        waiters.append(asyncio.ensure_future(asyncio.sleep(a.exit_after)))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    rt.shutdown()
    for t in tasks:
        t.cancel()
    print(json.dumps({"stopped": True}), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
