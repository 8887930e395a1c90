#!/usr/bin/env python3
"""Capture TCP payloads on the loopback interface (AF_PACKET, needs root) — a poor man's tcpdump.

Usage: lo_sniff.py --ports P1,P2,... | --all  [--duration S] [--out file.jsonl]
Each line written: {"t": <float>, "src": "ip:port", "dst": "ip:port", "flags": "SAFRP", "hex": "<payload hex>"}
Used to document the exact bytes exchanged between ai-dynamo-runtime 1.6.1 callers and servers.
"""
import argparse, json, socket, struct, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--ports", default="")
ap.add_argument("--all", action="store_true")
ap.add_argument("--duration", type=float, default=20)
ap.add_argument("--out", default="-")
a = ap.parse_args()
ports = {int(p) for p in a.ports.split(",") if p}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind(("lo", 0))
s.settimeout(0.2)
out = sys.stdout if a.out == "-" else open(a.out, "w")
end = time.time() + a.duration
while time.time() < end:
    try:
        pkt, addr = s.recvfrom(70000)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:  # loopback packets are seen twice
        continue
    eth = pkt[14:]
    if struct.unpack("!H", pkt[12:14])[0] != 0x0800:
        continue
    ihl = (eth[0] & 0xF) * 4
    if eth[9] != 6:
        continue
    tot = struct.unpack("!H", eth[2:4])[0]
    src = socket.inet_ntoa(eth[12:16]); dst = socket.inet_ntoa(eth[16:20])
    tcp = eth[ihl:tot]
    sp, dp = struct.unpack("!HH", tcp[:4])
    doff = (tcp[12] >> 4) * 4
    fl = tcp[13]
    payload = tcp[doff:]
    if not a.all and sp not in ports and dp not in ports:
        continue
    flags = "".join(c for c, b in zip("FSRPA", [1, 2, 4, 8, 16]) if fl & b)
    if not payload and not (fl & 0x07):
        continue
    out.write(json.dumps({"t": time.time(), "src": f"{src}:{sp}", "dst": f"{dst}:{dp}", "flags": flags, "hex": payload.hex()}) + "\n")
    out.flush()
