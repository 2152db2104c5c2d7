"""`meshllama serve` against the official openai client, on loopback, with the default model:
completions and chat, streaming and not, stop strings, logprobs, usage, errors as the client's
exception types; every bad request's status and JSON error; 64 concurrent requests over 8 slots
whose greedy answers equal their solo runs (batch invariance, ids compared through the text and
the logprobs' tokens); SIGTERM draining. Bounded: small max_tokens, a 1024-position context."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import DEFAULT_MODEL

openai = pytest.importorskip("openai")  # pinned in python/requirements.txt

CLI = os.environ.get("MESHLLAMA_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="MESHLLAMA_CLI (build/meshllama) not given")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30


class Server:
    """A `meshllama serve --port 0` process and its address."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([CLI, "serve", "-m", DEFAULT_MODEL, "--port", "0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + START_TIMEOUT_S
        self.url = None
        while time.time() < deadline and self.url is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.search(r"listening on (http://[0-9.]+:\d+)", line)
            if found:
                self.url = found.group(1)
        assert self.url, "the server did not start:\n" + "".join(self.log)
        # keep reading stderr so the server never blocks on a full pipe
        self.reader = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def client(self, **kw):
        kw.setdefault("api_key", "none")
        kw.setdefault("base_url", self.url + "/v1")
        return openai.OpenAI(max_retries=0, timeout=300, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.reader.join(timeout=5)
        return code


@pytest.fixture(scope="module")
def server():
    s = Server("--slots", "8", "--ctx", "1024", "--tp", "2", "--max-body", "65536")
    yield s
    assert s.stop() == 0, "".join(s.log)


def http(url, method="GET", body=None, headers=None):
    """(status, headers, parsed JSON or text) of one raw request."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, head, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, e.headers, e.read()
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode()


def metric(server, name):
    _, _, text = http(server.url + "/metrics")
    found = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(found.group(1)) if found else None


GREEDY = dict(temperature=0, max_tokens=12)


def test_completion_equals_meshllama_run(server):
    c = server.client()
    r = c.completions.create(model="m", prompt="The capital of France is", **GREEDY)
    run = json.loads(subprocess.run([CLI, "run", "-m", DEFAULT_MODEL, "-p", "The capital of France is", "-n", "12",
                                     "--json"], check=True, capture_output=True, text=True).stdout)
    assert r.choices[0].text == run["text"]
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(run["prompt_ids"])
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.object == "text_completion" and r.id.startswith("cmpl-")


def test_completion_prompt_as_token_ids(server):
    c = server.client()
    _, _, tok = http(server.url + "/tokenize", "POST", {"content": "The capital of France is"})
    by_text = c.completions.create(model="m", prompt="The capital of France is", **GREEDY)
    by_ids = c.completions.create(model="m", prompt=tok["tokens"], **GREEDY)
    assert by_ids.choices[0].text == by_text.choices[0].text


def chat_messages(question):
    return [{"role": "system", "content": "You are brief."}, {"role": "user", "content": question}]


def test_chat_stream_equals_whole(server):
    c = server.client()
    whole = c.chat.completions.create(model="m", messages=chat_messages("Name a fruit."), temperature=0,
                                      max_tokens=20)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(c.chat.completions.create(model="m", messages=chat_messages("Name a fruit."), temperature=0,
                                            max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_completion_stream(server):
    c = server.client()
    whole = c.completions.create(model="m", prompt="Once upon a time", **GREEDY)
    chunks = list(c.completions.create(model="m", prompt="Once upon a time", stream=True, **GREEDY))
    assert "".join(ch.choices[0].text for ch in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_string(server):
    c = server.client()
    full = c.completions.create(model="m", prompt="The capital of France is", **GREEDY).choices[0].text
    word = full.split()[1]  # a word from the middle of the answer
    cut = c.completions.create(model="m", prompt="The capital of France is", stop=[word, "zzz"], **GREEDY)
    assert cut.choices[0].text == full[:full.index(word)]
    assert cut.choices[0].finish_reason == "stop"


def test_chat_logprobs(server):
    c = server.client()
    r = c.chat.completions.create(model="m", messages=chat_messages("Count to five."), temperature=0, max_tokens=10,
                                  logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        # greedy: the chosen token is the most likely one
        assert entry.top_logprobs[0].token == entry.token and abs(tops[0] - entry.logprob) < 1e-6
        assert entry.logprob <= 0
    assert "".join(e.token for e in content).startswith(r.choices[0].message.content[:5])


def test_completion_logprobs(server):
    c = server.client()
    r = c.completions.create(model="m", prompt="One, two,", logprobs=2, **GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 12
    assert all(len(t) <= 2 for t in lp.top_logprobs)


def test_seeded_sampling_repeats(server):
    c = server.client()
    kw = dict(model="m", prompt="My favourite animal is", max_tokens=10, temperature=0.9, top_p=0.95, seed=1234,
              presence_penalty=0.5, frequency_penalty=0.2, logit_bias={"30": -1},
              extra_body={"top_k": 40, "min_p": 0.01})
    assert c.completions.create(**kw).choices[0].text == c.completions.create(**kw).choices[0].text


def test_client_exception_types(server):
    c = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="m", prompt="x", temperature=5)
    assert e.value.status_code == 400 and "temperature" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="m", messages=[], max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="m", prompt="x", n=2)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="m", prompt="x", max_tokens=5000)
    assert "context" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        server.client(base_url=server.url + "/v2").completions.create(model="m", prompt="x")


BAD_BODIES = [
    ("/v1/completions", b"{not json", None),
    ("/v1/completions", b"[1, 2]", None),
    ("/v1/completions", {"prompt": 5}, "prompt"),
    ("/v1/completions", {}, "prompt"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, "temperature"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, "top_p"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 100000}, "max_tokens"),
    ("/v1/completions", {"prompt": "x " * 1100}, "messages"),
    ("/v1/completions", {"prompt": "x", "n": 3}, "n"),
    ("/v1/completions", {"prompt": "x", "stop": [""]}, "stop"),
    ("/v1/completions", {"prompt": "x", "stop": 7}, "stop"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"1": 500}}, "logit_bias"),
    ("/v1/completions", {"prompt": "x", "logprobs": 50}, "logprobs"),
    ("/v1/completions", {"prompt": [1, -4]}, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/completions", {"prompt": "x", "seed": "s"}, "seed"),
    ("/v1/completions", {"prompt": "x", "model": 3}, "model"),
    ("/v1/completions", {"prompt": "x", "echo": True}, "echo"),
    ("/v1/chat/completions", {"messages": "hi"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"content": "no role"}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ("/tokenize", {"content": 3}, "content"),
    ("/tokenize", b"{", None),
    ("/detokenize", {"tokens": [1, "a"]}, "tokens"),
    ("/detokenize", {"tokens": [10 ** 9]}, "tokens"),
]


@pytest.mark.parametrize("path,body,param", BAD_BODIES)
def test_bad_request_is_400_with_an_error_object(server, path, body, param):
    status, _, answer = http(server.url + path, "POST", body, {"Content-Type": "application/json"})
    assert status == 400, answer
    err = answer["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_routes_methods_and_limits(server):
    status, _, answer = http(server.url + "/v1/nothing")
    assert status == 404 and answer["error"]["message"]
    status, head, answer = http(server.url + "/v1/completions")
    assert status == 405 and head["Allow"] == "POST" and answer["error"]["code"] == "method_not_allowed"
    status, _, _ = http(server.url + "/health", "POST", b"{}")
    assert status == 405
    status, _, answer = http(server.url + "/v1/completions", "POST", b"{\"prompt\": \"" + b"a" * 70000 + b"\"}")
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    status, _, answer = http(server.url + "/health")
    assert status == 200 and answer == {"status": "ok"}
    status, _, answer = http(server.url + "/v1/models")
    assert status == 200 and answer["data"][0]["id"] == os.path.basename(DEFAULT_MODEL)


def test_tokenize_round_trip(server):
    text = "Hello, world! Ünïcödé 🙂"
    status, _, tok = http(server.url + "/tokenize", "POST", {"content": text})
    assert status == 200 and tok["tokens"]
    status, _, back = http(server.url + "/detokenize", "POST", {"tokens": tok["tokens"]})
    assert status == 200 and back["content"] == text


def test_metrics_text(server):
    server.client().completions.create(model="m", prompt="Hi", max_tokens=2, temperature=0)
    status, head, text = http(server.url + "/metrics")
    assert status == 200 and head["Content-Type"].startswith("text/plain")
    for name in ("meshllama_requests_total", "meshllama_prompt_tokens_total", "meshllama_generation_tokens_total",
                 "meshllama_queue_depth", "meshllama_slots_in_use", "meshllama_time_to_first_token_seconds_bucket",
                 "meshllama_inter_token_latency_seconds_count"):
        assert name in text
    assert metric(server, "meshllama_generation_tokens_total") >= 2


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


PROMPTS = ["The capital of France is", "Once upon a time,", "def add(a, b):", "Water boils at", "The sun is a",
           "Three colors are", "My name is", "In 1492,"]


def one_request(client, i):
    """Request i of the concurrency test: greedy or sampled, streamed or not, some cancelled."""
    prompt = PROMPTS[i % len(PROMPTS)]
    max_tokens = 6 + (i % 4) * 4
    greedy = i % 3 != 2
    kw = dict(model="m", prompt=prompt, max_tokens=max_tokens, temperature=0 if greedy else 0.8, seed=i)
    if i % 8 == 5:  # cancelled midway: read two chunks, then close the connection
        stream = client.completions.create(stream=True, **kw)
        for n, _ in enumerate(stream):
            if n == 1:
                break
        stream.close()
        return ("cancelled", prompt, max_tokens, None)
    if i % 4 == 1:
        text = "".join(ch.choices[0].text for ch in client.completions.create(stream=True, **kw))
    else:
        text = client.completions.create(**kw).choices[0].text
    return ("greedy" if greedy else "sampled", prompt, max_tokens, text)


def test_concurrency_batch_invariance(server):
    c = server.client()
    solo = {}
    for p in PROMPTS:
        for m in (6, 10, 14, 18):
            solo[(p, m)] = c.completions.create(model="m", prompt=p, max_tokens=m, temperature=0).choices[0].text
    rss_before = rss_kib(server.proc.pid)
    results = [None] * 64
    errors = []

    def worker(t):
        client = server.client()
        for i in range(t, 64, 16):
            try:
                results[i] = one_request(client, i)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert all(r is not None for r in results)
    greedy = [r for r in results if r[0] == "greedy"]
    assert len(greedy) >= 30
    for kind, prompt, max_tokens, text in greedy:
        assert text == solo[(prompt, max_tokens)], (prompt, max_tokens)
    deadline = time.time() + 30
    while time.time() < deadline and (metric(server, "meshllama_slots_in_use") or metric(server, "meshllama_queue_depth")):
        time.sleep(0.2)
    assert metric(server, "meshllama_slots_in_use") == 0 and metric(server, "meshllama_queue_depth") == 0
    assert rss_kib(server.proc.pid) - rss_before < 64 * 1024, "RSS grew by more than 64 MiB over the run"


def test_api_key_and_full_queue():
    s = Server("--slots", "1", "--max-queue", "0", "--ctx", "512", "--api-key", "sekrit")
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client().completions.create(model="m", prompt="x", max_tokens=2)
        with pytest.raises(openai.AuthenticationError):
            s.client(api_key="wrong").completions.create(model="m", prompt="x", max_tokens=2)
        good = s.client(api_key="sekrit")
        assert good.completions.create(model="m", prompt="x", max_tokens=2, temperature=0).choices[0].text is not None
        assert http(s.url + "/health")[0] == 200  # open without the key
        # one long request holds the only slot; with no queue the next is 503 with Retry-After
        stream = good.completions.create(model="m", prompt="Tell me a long story.", max_tokens=400, stream=True,
                                         logit_bias={"0": -100, "2": -100})
        next(iter(stream))
        status, head, answer = http(s.url + "/v1/completions", "POST", {"prompt": "x", "max_tokens": 2},
                                    {"Authorization": "Bearer sekrit"})
        assert status == 503 and head["Retry-After"] and answer["error"]["code"] == "overloaded"
        with pytest.raises(openai.InternalServerError) as e:  # the client's type for 5xx
            good.completions.create(model="m", prompt="x", max_tokens=2)
        assert e.value.status_code == 503
        stream.close()
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_sigterm_drains_and_exits_0():
    s = Server("--slots", "2", "--ctx", "512", "--drain-timeout", "1")
    c = s.client()
    stream = c.completions.create(model="m", prompt="Tell me a long story.", max_tokens=450, stream=True,
                                  logit_bias={"0": -100, "2": -100})
    first = next(iter(stream))
    assert first.choices
    started = time.time()
    s.proc.send_signal(signal.SIGTERM)
    # the stream ends (cut by the drain bound) with an error event, never silently
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert s.stop() == 0, "".join(s.log)
    assert time.time() - started < 15
    assert any("draining" in line for line in s.log)
