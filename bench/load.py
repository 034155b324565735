"""Load generator: signed `/decision <title>` slash commands at a fixed concurrency.

Runs in its own process so that it does not share an interpreter with the server under test.
Prints one JSON object: latencies (ms) percentiles, requests per second, errors.

    python bench/load.py --url http://127.0.0.1:3000 --concurrency 10 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

SECRET = "bench-signing-secret"


def body(number: int) -> str:
    return urlencode({
        "token": "x", "team_id": "T0BENCH01", "team_domain": "bench",
        "channel_id": f"C0BENCH{number % 20:02d}", "channel_name": f"bench-{number % 20}",
        "user_id": "U0BENCH01", "user_name": "bench", "command": "/decision",
        "text": f"Benchmark decision number {number}", "api_app_id": "A0001",
        "response_url": "http://127.0.0.1:9/unused", "trigger_id": f"t.{number}",
    })


async def run(url: str, concurrency: int, seconds: float, warmup: float) -> dict:
    verifier = SignatureVerifier(SECRET)
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while (now := time.perf_counter()) < stop_at:
            payload = body(next(counter))
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Slack-Request-Timestamp": timestamp,
                       "X-Slack-Signature": verifier.generate_signature(timestamp=timestamp,
                                                                       body=payload)}
            sent = time.perf_counter()
            try:
                response = await client.post(f"{url}/slack/events", content=payload,
                                             headers=headers)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            done = time.perf_counter()
            if now >= measure_from:
                if ok:
                    latencies.append((done - sent) * 1000)
                else:
                    errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "rps": len(latencies) / seconds, "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95), "p99_ms": percentile(0.99),
            "mean_ms": statistics.fmean(latencies) if latencies else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.concurrency, args.seconds, args.warmup))))


if __name__ == "__main__":
    main()
