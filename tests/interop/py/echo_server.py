#!/usr/bin/env python3
"""Serve ns.Comp.ep with a Python handler (ai-dynamo-runtime 1.6.1) that echoes its input.

Usage: echo_server.py --endpoint ns.Comp.ep [--mode echo|raise|multi|slow] [--extra-endpoint ns.Comp.health]
Discovery backend / request plane come from DYN_DISCOVERY_BACKEND / DYN_REQUEST_PLANE (defaults etcd/tcp),
exactly as @dynamo_worker() reads them.
Prints {"ready": true, "endpoint": ..., "instance_id": ...} once serving has been started,
then runs until SIGTERM/SIGINT (or --exit-after S seconds).

Modes:
  echo   yield {"echo": <input>, "type": "<python type name>"}
  raw    yield <input> unchanged
  raise  raise ValueError("boom: <input>") before yielding anything
  midraise  yield one item, then raise ValueError("mid-stream boom")
  multi  yield 3 items {"i": 0..2, "echo": <input>}
  slow   sleep --sleep S then yield like echo
"""
import argparse
import asyncio
import json
import os
import signal
import sys

from dynamo.runtime import DistributedRuntime


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--extra-endpoint", default=None)
    ap.add_argument("--mode", default="echo", choices=["echo", "raw", "raise", "midraise", "multi", "slow"])
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--exit-after", type=float, default=0.0)
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )

    async def handler(request, *rest):
        if args.mode == "raise":
            raise ValueError(f"boom: {request}")
        if args.mode == "raw":
            yield request
            return
        if args.mode == "midraise":
            yield {"i": 0}
            raise ValueError("mid-stream boom")
        if args.mode == "multi":
            for i in range(3):
                yield {"i": i, "echo": request}
            return
        if args.mode == "slow":
            await asyncio.sleep(args.sleep)
        yield {"echo": request, "type": type(request).__name__}

    async def health(request, *rest):
        yield {"status": "healthy", "got": request}

    ep = runtime.endpoint(args.endpoint)
    tasks = [asyncio.ensure_future(ep.serve_endpoint(handler))]
    if args.extra_endpoint:
        ep2 = runtime.endpoint(args.extra_endpoint)
        tasks.append(asyncio.ensure_future(ep2.serve_endpoint(health, health_check_payload={"text": "health"})))
    await asyncio.sleep(0.5)
    out({"ready": True, "endpoint": args.endpoint, "instance_id": ep.connection_id()})

    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    waiters = [asyncio.ensure_future(stop.wait())] + tasks
    if args.exit_after > 0:
        waiters.append(asyncio.ensure_future(asyncio.sleep(args.exit_after)))
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        if t in done and t.exception():
            out({"error": repr(t.exception())})
    runtime.shutdown()
    for t in tasks:
        t.cancel()
    out({"stopped": True})


if __name__ == "__main__":
    asyncio.run(main())
