#!/usr/bin/env python3
"""Call a Dynamo endpoint with the real Python runtime (ai-dynamo-runtime 1.6.1), the way a planner does.

Usage:
  call_endpoint.py --endpoint ns.Comp.ep --payload '<json>' [--as-string] [--raw-text '<text>']
                   [--timeout S] [--wait-timeout S] [--call-timeout S] [--repeat N] [--annotated|--no-annotated]

Discovery backend / request plane are read from the environment exactly like @dynamo_worker():
DYN_DISCOVERY_BACKEND (default "etcd"), DYN_REQUEST_PLANE (default "tcp"); the runtime itself reads
ETCD_ENDPOINTS, DYN_FILE_KV, DYN_TCP_* ...

Output (JSON lines on stdout):
  {"instances": [<ids>]}                                   after wait_for_instances()
  {"item": <data>}                                         one per stream item (item.data() if annotated)
  {"exception": "<type>", "message": "<text>"}            if generate()/the stream raises
  {"done": true, "items": n}                              at the end
  with --repeat N (N>1): only {"instances": ...} and
  {"summary": {"n":N,"ok":k,"errors":e,"total_s":..,"mean_ms":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"first_error":...}}
Exit codes: 0 = ran (also when the stream raised: that is reported, not a failure of the driver),
            2 = no instance within --wait-timeout, 3 = --timeout elapsed, 1 = unexpected driver failure.
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


def item_data(x, annotated):
    if annotated and hasattr(x, "data"):
        return x.data()
    return x


async def one_call(client, request, annotated):
    items = []
    stream = await client.generate(request, annotated=annotated)
    async for x in stream:
        items.append(item_data(x, annotated))
    return items


async def run(args):
    from dynamo.runtime import DistributedRuntime

    loop = asyncio.get_running_loop()
    runtime = DistributedRuntime(
        loop,
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    try:
        if args.raw_text is not None:
            request = args.raw_text
        else:
            obj = json.loads(args.payload)
            request = json.dumps(obj) if args.as_string else obj

        endpoint = runtime.endpoint(args.endpoint)
        client = await endpoint.client()
        try:
            ids = await asyncio.wait_for(client.wait_for_instances(), timeout=args.wait_timeout)
        except asyncio.TimeoutError:
            out({"exception": "TimeoutError", "message": f"no instance of {args.endpoint} within {args.wait_timeout}s"})
            return 2
        out({"instances": list(ids)})

        if args.repeat <= 1:
            n = 0

            async def stream_items():
                nonlocal n
                stream = await client.generate(request, annotated=args.annotated)
                async for x in stream:
                    out({"item": item_data(x, args.annotated)})
                    n += 1

            try:
                if args.call_timeout > 0:
                    await asyncio.wait_for(stream_items(), timeout=args.call_timeout)
                else:
                    await stream_items()
            except asyncio.TimeoutError:
                out({"exception": "TimeoutError", "message": f"call timeout {args.call_timeout}s elapsed", "call_timeout": True})
            except Exception as e:  # the stream (or generate) raised: report it
                out({"exception": type(e).__name__, "message": str(e)})
            out({"done": True, "items": n})
            return 0

        lat = []
        errors = 0
        first_error = None
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            t = time.perf_counter()
            try:
                await one_call(client, request, args.annotated)
                lat.append((time.perf_counter() - t) * 1000.0)
            except Exception as e:
                errors += 1
                if first_error is None:
                    first_error = f"{type(e).__name__}: {e}"
        total = time.perf_counter() - t0
        lat.sort()

        def pct(p):
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))], 3)

        out({"summary": {
            "n": args.repeat, "ok": len(lat), "errors": errors, "total_s": round(total, 4),
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": pct(100),
            "first_error": first_error,
        }})
        return 0
    finally:
        runtime.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--payload", default="{}")
    ap.add_argument("--as-string", action="store_true", help="send json.dumps(payload) (a Python str) instead of a dict")
    ap.add_argument("--raw-text", default=None, help="send this arbitrary Python str")
    ap.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    ap.add_argument("--wait-timeout", type=float, default=30.0, help="wait_for_instances timeout")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--call-timeout", type=float, default=0.0, help="deadline of generate() + the stream (after discovery); 0 = none")
    ap.add_argument("--annotated", dest="annotated", action="store_true", default=True)
    ap.add_argument("--no-annotated", dest="annotated", action="store_false")
    args = ap.parse_args()

    async def guarded():
        try:
            return await asyncio.wait_for(run(args), timeout=args.timeout)
        except asyncio.TimeoutError:
            out({"exception": "TimeoutError", "message": f"overall timeout {args.timeout}s elapsed"})
            return 3

    try:
        rc = asyncio.run(guarded())
    except Exception as e:
        out({"exception": type(e).__name__, "message": str(e), "fatal": True})
        rc = 1
    sys.stdout.flush()
    # the Rust runtime may keep background threads alive; leave hard.
    os._exit(rc)


if __name__ == "__main__":
    main()
