"""The C binding: cffi in ABI mode, declarations read from the real include/meshllama.h.

Nothing here restates a C declaration. At import the public header is turned into a cffi cdef
by dropping what only the C preprocessor needs (comments, #include, the include guard and the
C++ `extern "C"` block); any other preprocessor line is an error, so a header change that this
reader does not understand fails the import (and the tests) instead of drifting silently.
"""
import os
import re

import cffi

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(os.path.dirname(_PACKAGE_DIR))


class HeaderError(ImportError):
    """include/meshllama.h holds something the binding cannot read."""


def cdef_from_header(text, source="meshllama.h"):
    """Returns (cdef text for cffi, {macro: string value}) for the header text."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out, strings, stack = [], {}, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        skipping = "skip" in stack
        if not stripped.startswith("#"):
            out.append("" if skipping else line)
            continue
        words = stripped[1:].split(None, 2)
        directive = words[0] if words else ""
        if directive == "ifdef" and len(words) == 2 and words[1] == "__cplusplus":
            stack.append("skip")
        elif directive == "ifndef" and len(words) == 2:
            stack.append("keep")  # the include guard
        elif directive == "endif":
            if not stack:
                raise HeaderError(f"{source}:{number}: #endif without #if")
            stack.pop()
        elif skipping:
            pass
        elif directive == "include":
            pass  # the standard headers: cffi knows size_t, intN_t, FILE
        elif directive == "define" and len(words) == 2:
            pass  # the include guard's macro
        elif directive == "define" and re.fullmatch(r'"[^"\\]*"', words[2].strip()):
            strings[words[1]] = words[2].strip()[1:-1]
        elif directive == "define" and re.fullmatch(r"-?\d+", words[2].strip()):
            out.append(f"#define {words[1]} {words[2].strip()}")
            continue
        else:
            raise HeaderError(f"{source}:{number}: preprocessor line the Python binding cannot read: {stripped}")
        out.append("")
    if stack:
        raise HeaderError(f"{source}: unterminated #if")
    return "\n".join(out), strings


def _find(env, candidates, what):
    path = os.environ.get(env)
    if path:
        if not os.path.exists(path):
            raise ImportError(f"meshllama: {env}={path}: no such file")
        return path
    for path in candidates:
        if os.path.exists(path):
            return path
    raise ImportError(f"meshllama: cannot find {what} (looked in {', '.join(candidates)}; set {env})")


def header_path():
    return _find("MESHLLAMA_HEADER", [os.path.join(_PACKAGE_DIR, "include", "meshllama.h"),
                                      os.path.join(_REPO_DIR, "include", "meshllama.h")], "meshllama.h")


def library_path():
    build = os.environ.get("BUILD_DIR", "build")
    return _find("MESHLLAMA_LIBRARY", [os.path.join(_PACKAGE_DIR, "libmeshllama.so"),
                                       os.path.join(_REPO_DIR, build, "libmeshllama.so")], "libmeshllama.so")


def _load():
    path = header_path()
    with open(path, encoding="utf-8") as f:
        cdef, strings = cdef_from_header(f.read(), path)
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    lib = ffi.dlopen(library_path())
    return ffi, lib, strings


ffi, lib, HEADER_STRINGS = _load()
