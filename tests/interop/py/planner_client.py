#!/usr/bin/env python3
"""Drive upstream's own planner-side Global Planner client from ai-dynamo 1.6.1.

A local planner configured with environment "global-planner" uses
  dynamo.planner.connectors.global_planner.GlobalPlannerConnector(runtime, dynamo_namespace,
      global_planner_namespace, global_planner_component="GlobalPlanner", model_name=None)
  await connector.async_init()                       # creates RemotePlannerClient
  await connector.set_component_replicas([TargetReplica(...)], blocking=...)
which needs env DYN_PARENT_DGD_K8S_NAME (DGD name) and POD_NAMESPACE (k8s namespace) and sends
ScaleRequest(...).model_dump_json() through
  dynamo.planner.connectors.clients.remote_client.RemotePlannerClient.send_scale_request().

Usage:
  planner_client.py --gp-namespace NS --caller-namespace CALLER --dgd NAME --k8s-namespace KNS
                    [--prefill N] [--decode N] [--blocking] [--via connector|remote]
                    [--connection-timeout S] [--max-retries N] [--timeout S]
                    [--prefill-component NAME] [--decode-component NAME] [--predicted-load]
  --prefill/--decode omitted => that role is not in target_replicas (both omitted => empty list).

Output: one JSON line
  {"via": ..., "request": {...ScaleRequest as sent...},
   "response": {"status": ..., "message": ..., "current_replicas": {...}} | null,
   "raised": null | {"exception": "<type>", "message": "<text>"}}
With --via connector, "raised" is what set_component_replicas() raised (RuntimeError for status
"error", nothing for success/rejected/scaling); "response" is the ScaleResponse it received (captured
by wrapping RemotePlannerClient.send_scale_request). With --via remote, RemotePlannerClient is used
directly and "raised" is what send_scale_request raised (e.g. the ValueError of an error item or a
pydantic ValidationError for an unknown status).
Exit: 0 = a response or a planner-side exception was obtained; 3 = --timeout; 1 = driver failure.
"""
import argparse
import asyncio
import json
import logging
import os
import sys


def out(o):
    sys.stdout.write(json.dumps(o, default=str) + "\n")
    sys.stdout.flush()


async def run(a):
    from dynamo.planner.config.defaults import SubComponentType, TargetReplica
    from dynamo.planner.connectors.clients.remote_client import RemotePlannerClient
    from dynamo.planner.connectors.global_planner import GlobalPlannerConnector
    from dynamo.planner.connectors.protocol import ScaleRequest
    from dynamo.runtime import DistributedRuntime

    # the connector reads these at call time
    os.environ["DYN_PARENT_DGD_K8S_NAME"] = a.dgd
    os.environ["POD_NAMESPACE"] = a.k8s_namespace

    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    targets = []
    if a.prefill is not None:
        targets.append(TargetReplica(sub_component_type=SubComponentType.PREFILL,
                                     component_name=a.prefill_component, desired_replicas=a.prefill))
    if a.decode is not None:
        targets.append(TargetReplica(sub_component_type=SubComponentType.DECODE,
                                     component_name=a.decode_component, desired_replicas=a.decode))
    result = {"via": a.via, "request": None, "response": None, "raised": None}
    try:
        if a.via == "connector":
            conn = GlobalPlannerConnector(runtime, a.caller_namespace, a.gp_namespace)
            await conn.async_init()
            rc = conn.remote_client
            rc.connection_timeout = a.connection_timeout
            rc.max_retries = a.max_retries
            if a.predicted_load:
                conn.set_predicted_load(10.0, 3000.0, 150.0)
            orig = rc.send_scale_request

            async def spy(req):
                result["request"] = json.loads(req.model_dump_json())
                resp = await orig(req)
                result["response"] = json.loads(resp.model_dump_json())
                return resp

            rc.send_scale_request = spy
            try:
                await conn.set_component_replicas(targets, blocking=a.blocking)
            except Exception as e:
                result["raised"] = {"exception": type(e).__name__, "message": str(e)}
        else:
            import time
            rc = RemotePlannerClient(runtime, a.gp_namespace, "GlobalPlanner",
                                     connection_timeout=a.connection_timeout, max_retries=a.max_retries)
            req = ScaleRequest(caller_namespace=a.caller_namespace, graph_deployment_name=a.dgd,
                               k8s_namespace=a.k8s_namespace, target_replicas=targets,
                               blocking=a.blocking, timestamp=time.time(),
                               predicted_load=({"num_requests": 10.0, "isl": 3000.0, "osl": 150.0}
                                               if a.predicted_load else None))
            result["request"] = json.loads(req.model_dump_json())
            try:
                resp = await rc.send_scale_request(req)
                result["response"] = json.loads(resp.model_dump_json())
            except Exception as e:
                result["raised"] = {"exception": type(e).__name__, "message": str(e)}
        out(result)
        return 0
    finally:
        runtime.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gp-namespace", required=True, help="Dynamo namespace of the Global Planner")
    ap.add_argument("--caller-namespace", required=True)
    ap.add_argument("--dgd", required=True, help="DYN_PARENT_DGD_K8S_NAME")
    ap.add_argument("--k8s-namespace", required=True, help="POD_NAMESPACE")
    ap.add_argument("--prefill", type=int, default=None)
    ap.add_argument("--decode", type=int, default=None)
    ap.add_argument("--prefill-component", default=None)
    ap.add_argument("--decode-component", default=None)
    ap.add_argument("--blocking", action="store_true")
    ap.add_argument("--predicted-load", action="store_true")
    ap.add_argument("--via", choices=["connector", "remote"], default="connector")
    ap.add_argument("--connection-timeout", type=float, default=10.0)
    ap.add_argument("--max-retries", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if not a.verbose:
        logging.disable(logging.WARNING)

    async def guarded():
        try:
            return await asyncio.wait_for(run(a), timeout=a.timeout)
        except asyncio.TimeoutError:
            out({"raised": {"exception": "TimeoutError", "message": f"driver timeout {a.timeout}s"}})
            return 3

    try:
        rc = asyncio.run(guarded())
    except Exception as e:
        out({"raised": {"exception": type(e).__name__, "message": str(e)}, "fatal": True})
        rc = 1
    sys.stdout.flush()
    os._exit(rc)


if __name__ == "__main__":
    main()
