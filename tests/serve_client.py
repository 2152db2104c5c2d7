"""Drives a running `meshllama serve` with the standard library only (tests/cli_serve.sh; the
sanitizer build runs it too): every route, streaming, bad requests, concurrent requests with
some clients vanishing midway, and greedy answers equal to their solo runs; with IDLE_S, a client
that sends half a request is disconnected after the server's --timeout of IDLE_S seconds.
Exits non-zero on the first failure. Usage: serve_client.py URL ROUNDS [IDLE_S]"""
import http.client
import json
import re
import socket
import sys
import threading
import urllib.parse

URL = sys.argv[1]
ROUNDS = int(sys.argv[2])
IDLE_S = float(sys.argv[3]) if len(sys.argv) > 3 else None
HOST, PORT = urllib.parse.urlsplit(URL).hostname, urllib.parse.urlsplit(URL).port


def request(method, path, body=None, raw=None):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=300)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


def complete(prompt, n, **kw):
    status, answer = request("POST", "/v1/completions", dict(prompt=prompt, max_tokens=n, temperature=0, **kw))
    check(status == 200, "completion: %s %s" % (status, answer))
    return answer["choices"][0]["text"]


def stream(prompt, n, vanish_after=None):
    """Streamed text; with vanish_after, the socket is closed after that many events."""
    sock = socket.create_connection((HOST, PORT), timeout=300)
    body = json.dumps(dict(prompt=prompt, max_tokens=n, temperature=0, stream=True)).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if vanish_after is not None and data.count(b"data: ") >= vanish_after:
            sock.close()
            return None
    sock.close()
    events = re.findall(rb"data: (.*?)\n\n", data)
    check(events and events[-1] == b"[DONE]", "stream ends with [DONE]: %r" % data[-200:])
    return "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])


def slow_client():
    """Half a request line, then silence: the server closes the connection after --timeout."""
    import time
    sock = socket.create_connection((HOST, PORT), timeout=IDLE_S + 30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    start = time.time()
    try:
        closed = sock.recv(1024) == b""
    except (ConnectionResetError, socket.timeout):
        closed = True
    waited = time.time() - start
    sock.close()
    check(closed and waited < IDLE_S + 20, "a silent client is disconnected after %.0f s (waited %.1f s)" % (IDLE_S, waited))


PROMPTS = ["The capital of France is", "Once upon a time,", "def add(a, b):", "Water boils at"]


def main():
    check(request("GET", "/health") == (200, {"status": "ok"}), "health")
    check(request("GET", "/v1/models")[0] == 200, "models")
    check(request("GET", "/nope")[0] == 404, "404")
    check(request("GET", "/v1/completions")[0] == 405, "405")
    check(request("POST", "/v1/completions", raw="{bad")[0] == 400, "malformed JSON")
    check(request("POST", "/v1/completions", raw="x" * 70000)[0] == 413, "413")
    status, answer = request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 99999})
    check(status == 400 and answer["error"]["code"] == "context_length_exceeded", "context: %s" % answer)
    status, answer = request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                              "max_tokens": 4, "logprobs": True, "top_logprobs": 2})
    check(status == 200 and len(answer["choices"][0]["logprobs"]["content"]) == answer["usage"]["completion_tokens"],
          "chat logprobs: %s" % answer)
    status, tok = request("POST", "/tokenize", {"content": "Hello"})
    check(status == 200 and request("POST", "/detokenize", tok)[1] == {"content": "Hello"}, "tokenize round trip")
    if IDLE_S is not None:
        slow_client()
    solo = {p: complete(p, 12) for p in PROMPTS}
    check(stream(PROMPTS[0], 12) == solo[PROMPTS[0]], "stream equals whole")
    failures = []

    def worker(t):
        for r in range(ROUNDS):
            p = PROMPTS[(t + r) % len(PROMPTS)]
            if (t + r) % 5 == 4:
                stream(p, 40, vanish_after=2)
                continue
            got = stream(p, 12) if (t + r) % 2 else complete(p, 12)
            if got != solo[p]:
                failures.append((p, got, solo[p]))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not failures, "greedy answers beside others equal their solo runs: %s" % failures[:2])
    for _ in range(100):
        _, text = request("GET", "/metrics")
        if re.search(r"^meshllama_slots_in_use 0$", text, re.M) and re.search(r"^meshllama_queue_depth 0$", text, re.M):
            break
        threading.Event().wait(0.1)
    else:
        check(False, "slots and queue back to 0 after the run")
    print("serve_client: ok")


main()
