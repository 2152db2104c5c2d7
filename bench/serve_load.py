#!/usr/bin/env python3
"""Load on an OpenAI-compatible server (meshllama serve, llama.cpp's llama-server): N concurrent
clients, each sending streamed /v1/completions requests with a prompt of P token ids (each
request its own rotation of them: no shared prefixes to reuse) and
max_tokens new tokens (ignore_eos, greedy), for each concurrency level. Prints one JSON line per
level: total output tok/s, time to first token p50/p99, inter-token latency p50/p99 (ms).
Standard library only (asyncio and raw HTTP/1.1), bounded by --requests per client.

    build/meshllama serve --slots 32 --port 8080 &
    python3 bench/serve_load.py --url http://127.0.0.1:8080 --concurrency 1,8,32
"""
import argparse
import asyncio
import json
import random
import statistics
import time
import urllib.parse
import urllib.request


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def prompt_ids(url, n):
    """n token ids of an English text, from the server's /tokenize."""
    text = " ".join(["The quick brown fox jumps over the lazy dog while the farmer watches."] * (n // 8 + 2))
    req = urllib.request.Request(url + "/tokenize", data=json.dumps({"content": text}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        ids = json.loads(r.read())["tokens"]
    return ids[:n]


async def one_request(host, port, body):
    """(ttft seconds, [inter-token gaps], tokens) of one streamed completion."""
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data))
    await writer.drain()
    start = time.perf_counter()
    first, last, gaps, tokens = None, None, [], 0
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            line = event[event.find(b"data: "):]
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            try:
                payload = json.loads(line[6:])
            except ValueError:
                continue
            choices = payload.get("choices") or []
            if not choices or not (choices[0].get("text") or choices[0].get("content")):
                continue
            now = time.perf_counter()
            tokens += 1
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
    writer.close()
    return (first - start if first else None), gaps, tokens


class Prompts:
    """Each request's own prompt: the P ids rotated by a different amount (from a random start per
    run), so no request shares a prefix with an earlier one, in this run or the last: a server
    that reuses cached prompt prefixes (llama-server's cache_prompt) gets no free prefill."""

    def __init__(self, ids):
        self.ids = ids
        self.next = random.randrange(len(ids))

    def take(self):
        k = self.next % len(self.ids)
        self.next += 1
        return self.ids[k:] + self.ids[:k]


async def client(host, port, body, prompts, n_requests, results):
    for _ in range(n_requests):
        results.append(await one_request(host, port, dict(body, prompt=prompts.take())))


async def level(host, port, body, prompts, concurrency, n_requests, usage_tokens):
    results = []
    start = time.perf_counter()
    await asyncio.gather(*(client(host, port, body, prompts, n_requests, results) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ttft = [r[0] for r in results if r[0] is not None]
    gaps = [g for r in results for g in r[1]]
    total = usage_tokens * len(results)
    return {"concurrency": concurrency, "requests": len(results), "seconds": round(elapsed, 2),
            "output_tok_s": round(total / elapsed, 2),
            "ttft_ms_p50": round(1e3 * percentile(ttft, 0.5), 1), "ttft_ms_p99": round(1e3 * percentile(ttft, 0.99), 1),
            "itl_ms_p50": round(1e3 * percentile(gaps, 0.5), 1) if gaps else None,
            "itl_ms_p99": round(1e3 * percentile(gaps, 0.99), 1) if gaps else None,
            "itl_ms_mean": round(1e3 * statistics.mean(gaps), 1) if gaps else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    parts = urllib.parse.urlsplit(args.url)
    ids = prompt_ids(args.url, args.prompt_tokens)
    # ignore_eos (llama.cpp's field, also meshllama's): every request generates max_tokens, so
    # the output tokens are counted exactly even when a streamed chunk holds several tokens
    # cache_prompt (llama-server's field; meshllama ignores it): no reuse of a slot's cached prefix
    body = {"model": "m", "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "cache_prompt": False}
    prompts = Prompts(ids)
    for c in [int(x) for x in args.concurrency.split(",")]:
        print(json.dumps(asyncio.run(level(parts.hostname, parts.port, body, prompts, c, args.requests, args.max_tokens))),
              flush=True)


if __name__ == "__main__":
    main()
