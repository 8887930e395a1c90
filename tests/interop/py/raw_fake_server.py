#!/usr/bin/env python3
"""A raw-socket fake Dynamo TCP worker (no dynamo runtime): used to observe what a real
ai-dynamo-runtime 1.6.1 *caller* sends and how it reacts to server-side variations.

File discovery backend only (DYN_FILE_KV, default /tmp/dynamo_store_kv). Registers one record,
re-touches it every 3 s, deletes it on exit.

  raw_fake_server.py --endpoint ns.Comp.ep [--codec none|json|msgpack] [--device-type none|cpu|cuda]
     [--path-style short|long] [--mode ok|error-comment|error-object|prologue-error|ack-text|no-final|close-early|multi|error-custom|item-custom|no-ack|ack-overloaded]
     [--exit-after S] [--error-json '{...}'] [--item-json '{...}']

Prints JSON lines: {"ready":..}, {"request": {...decoded frame...}}, {"event": ...}.
"""
import argparse, asyncio, json, os, random, struct, sys, tempfile, time

try:
    import msgpack
except ImportError:
    msgpack = None


def out(o):
    sys.stdout.write(json.dumps(o, default=repr) + "\n"); sys.stdout.flush()


def enc_key(key: str) -> str:
    return "".join(ch if (ch.isascii() and ch.isalnum()) else "".join("%%%02X" % b for b in ch.encode()) for ch in key)


def twopart(header: bytes = b"", data: bytes = b"") -> bytes:
    return struct.pack(">QQQ", len(header), len(data), 0) + header + data


async def read_twopart(r):
    hl, dl, _ck = struct.unpack(">QQQ", await r.readexactly(24))
    return await r.readexactly(hl), await r.readexactly(dl)


def encode(codec, obj):
    return msgpack.packb(obj) if codec == "msgpack" else json.dumps(obj, separators=(",", ":")).encode()


def decode(codec, b):
    if not b:
        return None
    return msgpack.unpackb(b, raw=False) if codec == "msgpack" else json.loads(b)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--codec", default="none")
    ap.add_argument("--device-type", default="none")
    ap.add_argument("--path-style", default="long", choices=["short", "long"])
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--instance-id", type=int, default=0)
    ap.add_argument("--error-json", default=None, help="mode=error-custom: JSON of the Annotated item's 'error' field")
    ap.add_argument("--item-json", default=None, help="mode=item-custom: JSON of the whole Annotated item")
    ap.add_argument("--exit-after", type=float, default=30)
    a = ap.parse_args()
    ns, comp, ep = a.endpoint.split(".")
    iid = a.instance_id or random.getrandbits(64)
    hexid = "%x" % iid

    async def handle(r, w):
        peer = w.get_extra_info("peername")
        out({"event": "conn", "peer": str(peer)})
        try:
            while True:
                pl = struct.unpack(">H", await r.readexactly(2))[0]
                path = (await r.readexactly(pl)).decode()
                hl = struct.unpack(">H", await r.readexactly(2))[0]
                hdrs = (await r.readexactly(hl)).decode()
                bl = struct.unpack(">I", await r.readexactly(4))[0]
                body = await r.readexactly(bl)
                chl, cdl, ck = struct.unpack(">QQQ", body[:24])
                ctrl = json.loads(body[24:24 + chl])
                data = body[24 + chl:24 + chl + cdl]
                codec = ctrl.get("payload_codec", "json")
                try:
                    val = decode(codec, data)
                except Exception as e:
                    val = f"<undecodable {e}>"
                out({"request": {"path": path, "headers": json.loads(hdrs) if hdrs else None, "body_len": bl,
                                 "twopart": [chl, cdl, ck], "control": ctrl, "data_hex": data.hex(), "value": val}})
                if a.mode == "no-ack":
                    continue
                if a.mode == "ack-overloaded":
                    msg = b"Server overloaded: fake"
                    w.write(struct.pack(">I", len(msg)) + msg); await w.drain()
                    continue
                if a.mode == "ack-unavailable":
                    msg = b"Server unavailable: fake"
                    w.write(struct.pack(">I", len(msg)) + msg); await w.drain()
                    continue
                if a.mode == "ack-text":
                    msg = b"Unknown endpoint: " + path.encode()
                    w.write(struct.pack(">I", len(msg)) + msg); await w.drain()
                    continue
                w.write(b"\0\0\0\0"); await w.drain()
                asyncio.ensure_future(respond(ctrl, codec, val))
        except asyncio.IncompleteReadError:
            out({"event": "conn-closed", "peer": str(peer)})

    async def respond(ctrl, codec, val):
        ci = ctrl["connection_info"]
        info = json.loads(ci["info"])
        host, port = info["address"].rsplit(":", 1)
        r, w = await asyncio.open_connection(host, int(port))
        w.write(twopart(json.dumps({"subject": info["subject"], "stream_type": "response"}).encode()))
        if a.mode == "prologue-error":
            w.write(twopart(json.dumps({"error": "fake prologue failure"}).encode()))
            await w.drain(); w.close(); return
        w.write(twopart(b'{"error":null}'))
        if a.mode == "close-early":
            await w.drain(); w.close(); return
        if a.mode == "error-comment":
            items = [{"event": "error", "comment": ["Invalid request: fake comment error"]}]
        elif a.mode == "error-object":
            items = [{"event": "error", "error": {"error_type": "Unknown", "message": "fake object error"}}]
        elif a.mode == "error-custom":
            items = [{"event": "error", "error": json.loads(a.error_json)}]
        elif a.mode == "item-custom":
            items = [json.loads(a.item_json)]
        elif a.mode == "multi":
            items = [{"data": {"i": i}} for i in range(3)]
        else:
            items = [{"data": {"echo": val, "codec": codec}}]
        for it in items:
            w.write(twopart(b"", encode(codec, {"data": it, "complete_final": False})))
        if a.mode != "no-final":
            w.write(twopart(b"", encode(codec, {"complete_final": True})))
            w.write(twopart(b'"sentinel"'))
        await w.drain()
        try:
            while True:
                h, d = await asyncio.wait_for(read_twopart(r), 10)
                out({"event": "callhome-rx", "header": h.decode(errors="replace"), "data_hex": d.hex()})
        except Exception as e:
            out({"event": "callhome-end", "why": type(e).__name__})
        w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    path = f"{hexid}/{ns}/{comp}/{ep}" if a.path_style == "long" else f"{hexid}/{ep}"
    rec = {"type": "Endpoint", "component": comp, "endpoint": ep, "namespace": ns,
           "instance_id": iid, "transport": {"tcp": f"127.0.0.1:{port}/{path}"}}
    if a.device_type != "none":
        rec["device_type"] = a.device_type
    if a.codec != "none":
        rec["request_plane_codec"] = a.codec
    root = os.environ.get("DYN_FILE_KV", os.path.join(tempfile.gettempdir(), "dynamo_store_kv"))
    d = os.path.join(root, "v1", "instances"); os.makedirs(d, exist_ok=True)
    fn = os.path.join(d, enc_key(f"{ns}/{comp}/{ep}/{hexid}"))
    tmp = os.path.join(d, ".tmp_%016x" % random.getrandbits(64))
    with open(tmp, "w") as f:
        f.write(json.dumps(rec))
    os.rename(tmp, fn)
    out({"ready": True, "file": fn, "record": rec})
    t_end = time.time() + a.exit_after
    try:
        while time.time() < t_end:
            await asyncio.sleep(min(3, max(0.05, t_end - time.time())))
            if os.path.exists(fn):
                os.utime(fn)
            else:
                out({"event": "record-file-vanished"})
    finally:
        try:
            os.unlink(fn)
        except FileNotFoundError:
            pass
        srv.close()
        out({"stopped": True})

asyncio.run(main())
