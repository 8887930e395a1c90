#!/usr/bin/env python3
"""One long-lived 1.6.1 client: print its instance list each time it changes.

Usage: watch_instances.py --endpoint ns.Comp.ep [--interval S] [--timeout S]
Prints {"instances": [<ids>]} at start and on every change (polled from client.instance_ids(), the
list the client routes over), until stdin closes or --timeout elapses. Discovery backend and
request plane come from DYN_DISCOVERY_BACKEND / DYN_REQUEST_PLANE, as @dynamo_worker() reads them.
"""
import argparse
import asyncio
import json
import os
import sys


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    from dynamo.runtime import DistributedRuntime

    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    client = await runtime.endpoint(args.endpoint).client()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: closed.set() if not sys.stdin.buffer.read1(1024) else None)
    last = None
    deadline = loop.time() + args.timeout
    while not closed.is_set() and loop.time() < deadline:
        ids = sorted(client.instance_ids())
        if ids != last:
            out({"instances": ids})
            last = ids
        await asyncio.sleep(args.interval)
    runtime.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)
