#!/usr/bin/env python3
"""Drives `meshllama chat` through a pseudo-terminal, as a person at a terminal would
(tests/cli_chat_pty.sh): the /commands, a continued line, a line-editing recall (libedit),
Ctrl-C during an answer (the answer stops, the chat goes on), /save and /load of the
conversation as JSON, then Ctrl-D exits 0; a second session ends on Ctrl-C at the prompt.
Usage: chat_pty.py MESHLLAMA MODEL TMPDIR. Exit status 0 only if every check passed."""
import json
import os
import pty
import re
import select
import signal
import sys
import time

binary, model, tmp = sys.argv[1:4]
failures = []


class Session:
    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(binary, [binary, "chat", "-m", model, *args])
        self.seen = ""

    def expect(self, pattern, timeout=120.0, what=None):
        """Reads until the regex matches text received since the last match."""
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.seen)
            if m:
                self.seen = self.seen[m.end():]
                return True
            left = deadline - time.time()
            if left <= 0:
                failures.append(f"{what or pattern!r}: not seen in {timeout:.0f} s; got {self.seen[-600:]!r}")
                return False
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    failures.append(f"{what or pattern!r}: the chat ended first; got {self.seen[-600:]!r}")
                    return False
                self.seen += data.decode("utf-8", "replace")

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=60.0):
        """The exit status (or -signal) once the process ends, reading what it still prints."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.fd, 4096).decode("utf-8", "replace")
                except OSError:
                    pass
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def check(ok, message):
    if not ok:
        failures.append(message)


saved = os.path.join(tmp, "conversation.json")
s = Session("-n", "600", "--min-tokens", "600")  # every answer runs 600 tokens: Ctrl-C lands mid-answer even on a fast machine
s.expect(r"/help for commands", what="the banner")
s.expect(r"> ", what="the prompt")
s.send("/help\r")
s.expect(r"/save FILE", what="/help")
s.send("/system You are a concise assistant.\r")
s.expect(r"\[system message set\]", what="/system")
if sys.argv[4:5] == ["libedit"]:
    s.send("\x1b[A\r")  # up arrow: the history recalls the /system line
    s.expect(r"\[system message set\]", what="history recall with the up arrow")
s.send("What is the capital \\\r")
s.expect(r"\.\.\. ", what="the continuation prompt")
s.send("of France?\r")
s.expect(r"\[kept \d+ cached tokens", what="the first answer")
s.expect(r"> ", what="the prompt after the answer")
s.send("Write a very long story about a dragon who learns to cook.\r")
s.expect(r"cook\.\r?\n", what="the echo of the request")
s.expect(r"\w+ \w+ \w+ \w+", timeout=120, what="the start of the story")  # a few words streamed
s.send("\x03")
s.expect(r"\[interrupted", what="Ctrl-C stops the answer")
s.expect(r"> ", what="the prompt after Ctrl-C")
s.send(f"/save {saved}\r")
s.expect(r"\[saved 5 messages", what="/save")
try:
    with open(saved) as f:
        messages = json.load(f)["messages"]
    check([m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"],
          f"saved roles: {[m['role'] for m in messages]}")
    check(messages[0]["content"] == "You are a concise assistant.", f"saved system: {messages[0]}")
    check(messages[1]["content"] == "What is the capital \nof France?", f"continued line: {messages[1]!r}")
    check(len(messages[4]["content"]) > 0, "the interrupted answer is kept")
except (OSError, ValueError, KeyError) as e:
    failures.append(f"saved conversation: {e}")
s.send("/clear\r")
s.expect(r"\[conversation cleared\]", what="/clear")
s.send(f"/load {saved}\r")
s.expect(r"\[loaded 5 messages", what="/load")
s.send("/nonsense\r")
s.expect(r"unknown command '/nonsense'", what="an unknown command")
s.expect(r"> ", what="the prompt before Ctrl-D")
s.send("\x04")
code = s.wait()
check(code == 0, f"Ctrl-D: exit status {code}, expected 0; {s.seen[-300:]!r}")

s = Session("-n", "8")
s.expect(r"> ", what="the prompt of the second session")
s.send("\x03")
code = s.wait()
check(code is not None and code != 0, f"Ctrl-C at the prompt: exit status {code}, expected the chat to end")

for f in failures:
    print("FAIL:", f, file=sys.stderr)
print(f"chat_pty: {'ok' if not failures else str(len(failures)) + ' failed'}")
sys.exit(1 if failures else 0)
