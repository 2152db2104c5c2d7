#!/usr/bin/env python3
"""Lengths of the C functions under the given folders, longest first, and a check.

    python3 tools/function_lengths.py [--max N] [--top K] DIR...

A function runs from the line of its opening brace's declaration to its closing brace, found
by counting braces outside comments, strings and character literals (the code is formatted
with each function's braces at column 0, as clang-format does here). With --max N the exit
status is 1 when a function is longer than N lines (ctest runs it on the library folders with
120, see tests/CMakeLists.txt).
"""

import argparse
import os
import re
import sys

SIGNATURE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def strip_code(text):
    """text with comments, strings and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j]) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, line count) for each function defined in path: a line at column 0
    with a name and "(" that is not a declaration (no ";" before the next "{" at depth 0)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = strip_code(f.read()).split("\n")
    found, depth, candidate, current = [], 0, None, None
    for number, line in enumerate(lines, 1):
        if depth == 0 and line[:1].strip() and not line.startswith("#"):
            match = SIGNATURE.search(line)
            if match and "=" not in line.split("(")[0] and not line.startswith(("typedef", "struct", "enum")):
                candidate = (match.group(1), number)
        for ch in line:
            if ch == ";" and depth == 0:
                candidate = None
            elif ch == "{":
                if depth == 0:
                    current, candidate = candidate, None
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and current is not None:
                    found.append((current[0], current[1], number - current[1] + 1))
                    current = None
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--max", type=int, default=0, help="fail when a function is longer than this")
    ap.add_argument("--top", type=int, default=10, help="print the K longest (default 10)")
    ap.add_argument("--allow", action="append", default=[], metavar="FILE:FUNCTION",
                    help="a function known to be too long, reported but not failed (to be split)")
    args = ap.parse_args()
    every = []
    paths = []
    for d in args.dirs:
        if os.path.isfile(d):
            paths.append(d)
        for root, _, files in os.walk(d):
            paths += [os.path.join(root, name) for name in sorted(files) if name.endswith(".c")]
    for path in paths:
        every += [(length, path, first, fn) for fn, first, length in functions(path)]
    every.sort(reverse=True)
    for length, path, first, fn in every[: args.top]:
        print(f"{length:5d}  {path}:{first}  {fn}")
    too_long = [e for e in every if args.max and e[0] > args.max]
    allowed = [e for e in too_long if f"{e[1]}:{e[3]}" in args.allow]
    too_long = [e for e in too_long if e not in allowed]
    for length, path, first, fn in allowed:
        print(f"ALLOWED: {path}:{first}: {fn} is {length} lines (at most {args.max}; to be split)")
    for length, path, first, fn in too_long:
        print(f"FAIL: {path}:{first}: {fn} is {length} lines (at most {args.max})", file=sys.stderr)
    print(f"function_lengths: {len(every)} functions, longest {every[0][0] if every else 0} lines"
          + (f", {len(too_long)} over {args.max}" if args.max else ""))
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())
