#!/usr/bin/env python3
"""Drives `meshllama chat` through a pseudo-terminal, as a person at a terminal would
(tests/cli_chat_pty.sh), in three sessions: the /commands, a continued line, a line-editing
recall (libedit), /save of the conversation as JSON and Ctrl-D exiting 0; /load of it, Ctrl-C
during an answer (the answer stops, stays in the conversation, the chat goes on); Ctrl-C at the
prompt ending the chat.
Usage: chat_pty.py MESHLLAMA MODEL TMPDIR. Exit status 0 only if every check passed."""
import json
import os
import pty
import re
import select
import signal
import sys
import termios
import time

binary, model, tmp = sys.argv[1:4]
editing = sys.argv[4] if len(sys.argv) > 4 else "plain"
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
        """Types text at the prompt once libedit has put the terminal in raw mode. libedit prints
        the prompt before it leaves canonical mode; what arrives in that gap is handled by the
        kernel's line discipline instead: a Ctrl-D is lost, and typed text is echoed twice, so
        the second echo looked like the start of an answer. On Linux tcgetattr on the master
        side reads the terminal's modes."""
        if editing == "libedit":
            deadline = time.time() + 10
            while termios.tcgetattr(self.fd)[3] & termios.ICANON and time.time() < deadline:
                time.sleep(0.01)
        os.write(self.fd, text.encode())

    def interrupt(self):
        """Ctrl-C while an answer is generated (the terminal is in canonical mode then)."""
        os.write(self.fd, b"\x03")

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


def saved_messages(roles):
    """The messages /save wrote, if their roles are the expected ones; None (a failure noted) if not."""
    try:
        with open(saved) as f:
            messages = json.load(f)["messages"]
        got = [m["role"] for m in messages]
    except (OSError, ValueError, KeyError, TypeError) as e:
        failures.append(f"saved conversation: {e}")
        return None
    check(got == roles, f"saved roles: {got}, expected {roles}")
    return messages if got == roles else None


def exit_with_ctrl_d(session, what):
    session.expect(r"> ", what=f"the prompt before {what}")
    session.send("\x04")
    code = session.wait()
    check(code == 0, f"{what}: exit status {code}, expected 0; {session.seen[-300:]!r}")

# Session 1: the commands, a continued line, history recall, a short answer, Ctrl-D.
s = Session("-n", "24")
s.expect(r"/help for commands", what="the banner")
s.expect(r"> ", what="the prompt")
s.send("/help\r")
s.expect(r"/save FILE", what="/help")
s.send("/system You are a concise assistant.\r")
s.expect(r"\[system message set\]", what="/system")
if editing == "libedit":
    s.send("\x1b[A\r")  # up arrow: the history recalls the /system line
    s.expect(r"\[system message set\]", what="history recall with the up arrow")
s.send("What is the capital \\\r")
s.expect(r"\.\.\. ", what="the continuation prompt")
s.send("of France?\r")
s.expect(r"\[kept \d+ cached tokens", what="the first answer")
s.expect(r"> ", what="the prompt after the answer")
s.send(f"/save {saved}\r")
s.expect(r"\[saved 3 messages", what="/save after the first answer")
messages = saved_messages(["system", "user", "assistant"])
if messages:
    check(messages[0]["content"] == "You are a concise assistant.", f"saved system: {messages[0]}")
    check(messages[1]["content"] == "What is the capital \nof France?", f"continued line: {messages[1]!r}")
s.send("/nonsense\r")
s.expect(r"unknown command '/nonsense'", what="an unknown command")
exit_with_ctrl_d(s, "Ctrl-D")

# Session 2: Ctrl-C during an answer. Every answer runs 600 tokens (--min-tokens), so the
# Ctrl-C lands mid-answer however fast the machine is; only one answer is generated, so a slow
# machine (sanitizers, load) is not kept waiting for a 600-token answer it does not interrupt.
s = Session("-n", "600", "--min-tokens", "600")
s.expect(r"> ", what="the prompt")
s.send(f"/load {saved}\r")
s.expect(r"\[loaded 3 messages", what="/load")
s.expect(r"> ", what="the prompt after /load")
s.send("Write a very long story about a dragon who learns to cook.\r")
s.expect(r"cook\.\r?\n", what="the echo of the request")
s.expect(r"\w+ \w+ \w+ \w+", timeout=300, what="the start of the story")  # a few words streamed
s.interrupt()
s.expect(r"\[interrupted", what="Ctrl-C stops the answer")
s.expect(r"> ", what="the prompt after Ctrl-C")
s.send(f"/save {saved}\r")
s.expect(r"\[saved 5 messages", what="/save after Ctrl-C")
messages = saved_messages(["system", "user", "assistant", "user", "assistant"])
if messages:
    check(len(messages[4]["content"]) > 0, f"the interrupted answer is kept: {messages[4]!r}")
s.send("/clear\r")
s.expect(r"\[conversation cleared\]", what="/clear")
exit_with_ctrl_d(s, "Ctrl-D after Ctrl-C")

# Session 3: Ctrl-C at the prompt ends the chat.
s = Session("-n", "8")
s.expect(r"> ", what="the prompt of the third session")
s.send("\x03")
code = s.wait()
check(code is not None and code != 0, f"Ctrl-C at the prompt: exit status {code}, expected the chat to end")

for f in failures:
    print("FAIL:", f, file=sys.stderr)
print(f"chat_pty: {'ok' if not failures else str(len(failures)) + ' failed'}")
sys.exit(1 if failures else 0)
