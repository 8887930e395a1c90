#!/usr/bin/env python3
"""Continuous load from P real planners (ai-dynamo-runtime 1.6.1) while Global Planner replicas are
killed, stopped and restarted: each planner scales its own DGD to 2, 3, 4, ... one request at a
time, retrying a request that raised until it is answered (as a planner's next tick would).

Usage:
  failover_driver.py --endpoint ns.GlobalPlanner.scale_request --k8s-namespace NS
                     [--planners 8] [--dgd-prefix pool-] [--pause-ms 50]
                     [--attempt-timeout S] [--op-deadline S]

Runs until SIGTERM, then finishes the request of every planner and prints one summary line:
  {"summary": {"ops": n, "ok": n, "answered_error": n, "lost": n, "hangs": n, "retries": n,
               "errors": {"<Type>: <text prefix>": count}, "answers": {"<dgd>": [v, ...]},
               "success_ms": [epoch ms of every success], "error_ms": [epoch ms of every error]}}
  ok: answered "success"; answered_error: answered another status (recorded in errors);
  hangs: an attempt with no answer within --attempt-timeout; lost: a request given up after
  --op-deadline. Before the loop starts: {"ready": true}. Exit code 0 when it ran.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


def make_request(ns, dgd, desired):
    from dynamo.planner.connectors.protocol import ScaleRequest, TargetReplica

    return ScaleRequest(
        caller_namespace="failover",
        graph_deployment_name=dgd,
        k8s_namespace=ns,
        target_replicas=[TargetReplica(sub_component_type="prefill", desired_replicas=desired)],
        blocking=False,
        timestamp=time.time(),
    ).model_dump_json()


async def one_call(client, request):
    items = []
    stream = await client.generate(request)
    async for x in stream:
        items.append(x.data() if hasattr(x, "data") else x)
    return items


async def run(args):
    from dynamo.runtime import DistributedRuntime

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    runtime = DistributedRuntime(
        loop, os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"), os.environ.get("DYN_REQUEST_PLANE", "tcp")
    )
    client = await runtime.endpoint(args.endpoint).client()
    await client.wait_for_instances()
    out({"ready": True})
    s = {"ops": 0, "ok": 0, "answered_error": 0, "lost": 0, "hangs": 0, "retries": 0, "errors": {},
         "answers": {}, "success_ms": [], "error_ms": []}

    def error(key):
        s["errors"][key] = s["errors"].get(key, 0) + 1
        s["error_ms"].append(int(time.time() * 1000))

    async def planner(i):
        dgd = f"{args.dgd_prefix}{i}"
        s["answers"][dgd] = []
        desired = 1
        while not stop.is_set():
            desired += 1
            s["ops"] += 1
            request = make_request(args.k8s_namespace, dgd, desired)
            started = time.monotonic()
            while True:
                try:
                    items = await asyncio.wait_for(one_call(client, request), timeout=args.attempt_timeout)
                    item = items[0] if items else {}
                    if isinstance(item, dict) and item.get("status") == "success":
                        s["ok"] += 1
                        s["answers"][dgd].append(desired)
                        s["success_ms"].append(int(time.time() * 1000))
                    else:
                        s["answered_error"] += 1
                        error("answer: " + json.dumps(item)[:120])
                    break
                except asyncio.TimeoutError:
                    s["hangs"] += 1
                    error("hang")
                except Exception as e:  # the runtime raises plain Exception/ValueError with a class prefix
                    error(f"{type(e).__name__}: {str(e)[:60]}")
                if time.monotonic() - started > args.op_deadline:
                    s["lost"] += 1
                    break
                s["retries"] += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(args.pause_ms / 1000)

    await asyncio.gather(*(planner(i) for i in range(args.planners)))
    out({"summary": s})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--k8s-namespace", required=True)
    p.add_argument("--planners", type=int, default=8)
    p.add_argument("--dgd-prefix", default="pool-")
    p.add_argument("--pause-ms", type=float, default=50)
    p.add_argument("--attempt-timeout", type=float, default=20)
    p.add_argument("--op-deadline", type=float, default=60)
    args = p.parse_args()
    asyncio.run(run(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
