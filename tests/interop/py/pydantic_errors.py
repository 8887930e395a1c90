#!/usr/bin/env python3
"""What upstream's @dynamo_endpoint(ScaleRequest, ScaleResponse) raises for each payload.

Usage: pydantic_errors.py CASES.json
CASES.json: a JSON list of {"text": "<str payload>"} (parse_raw) or {"value": <any JSON>}
(parse_obj for a dict, the ValueError branch for anything else).
Output: one JSON line per case: {"error": "<str(ValueError)>"} or {"ok": <model_dump()>}.
Uses upstream's own decorator and models (ai-dynamo 1.6.1, pydantic from the venv).
"""
import asyncio
import json
import sys
import warnings

warnings.simplefilter("ignore")  # parse_raw / parse_obj are deprecated in pydantic v2

from dynamo.planner.connectors.protocol import ScaleRequest, ScaleResponse  # noqa: E402
from dynamo.runtime import dynamo_endpoint  # noqa: E402


@dynamo_endpoint(ScaleRequest, ScaleResponse)
async def handler(request):
    yield json.loads(request.model_dump_json())  # inf/nan as null, like JSON.stringify


async def one(payload):
    try:
        async for item in handler(payload):
            return {"ok": item}
    except ValueError as e:
        return {"error": str(e)}


async def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        payload = case["text"] if "text" in case else case["value"]
        sys.stdout.write(json.dumps(await one(payload)) + "\n")
    sys.stdout.flush()


asyncio.run(main())
