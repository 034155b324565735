"""Load generator: signed `/decision <title>` slash commands at a fixed concurrency.

Runs in its own process so that it does not share an interpreter with the server under test.
Each of `concurrency` keep-alive connections sends one request, reads the whole answer, and
sends the next (a closed loop). Requests are plain HTTP/1.1 written on asyncio streams: an
HTTP client library costs about a millisecond of CPU per request, which on a two-core machine
would make the generator, not the server, the bottleneck. Prints one JSON object: latency
percentiles (ms), requests per second, errors.

    python bench/load.py --url http://127.0.0.1:3000 --concurrency 10 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from urllib.parse import urlencode, urlsplit

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


def signed_request(host: str, verifier: SignatureVerifier, number: int) -> bytes:
    payload = body(number)
    timestamp = str(int(time.time()))
    signature = verifier.generate_signature(timestamp=timestamp, body=payload)
    return (f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(payload)}\r\nX-Slack-Request-Timestamp: {timestamp}\r\n"
            f"X-Slack-Signature: {signature}\r\n\r\n{payload}").encode()


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length framed, as uvicorn sends); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return status


async def run(url: str, concurrency: int, seconds: float, warmup: float) -> dict:
    verifier = SignatureVerifier(SECRET)
    target = urlsplit(url)
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + seconds

    async def worker() -> None:
        nonlocal errors
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while (now := time.perf_counter()) < stop_at:
            request = signed_request(target.netloc, verifier, next(counter))
            sent = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(target.hostname, target.port)
                reader, writer = connection
                writer.write(request)
                ok = await asyncio.wait_for(read_response(reader), 30) == 200
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                ok, connection = False, None
            done = time.perf_counter()
            if now >= measure_from:
                if ok:
                    latencies.append((done - sent) * 1000)
                else:
                    errors += 1
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
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
