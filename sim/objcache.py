"""A compiler wrapper that compiles Verilator's run-time library once, not once per model.

Every Verilator model build compiles the same run-time sources (``verilated.cpp``,
``verilated_vpi.cpp``, ``verilated_threads.cpp``, ...) with the same flags: about three
quarters of a small model's C++ compile time.  Verilator's makefile runs every compile as
``$(OBJCACHE) $(CXX) ...``; :func:`objcache_command` returns a command for ``OBJCACHE`` that
runs this module.  For a source file inside ``$VERILATOR_ROOT/include`` it looks the object
up in a content-addressed store (key: the compiler's arguments with the output name
removed, the source file's contents and the compiler's version) and copies it, with its
``-MMD`` dependency file, instead of compiling.  Everything else (the model's own C++) is
compiled as usual.  A stored object whose dependency file names anything in the build folder
is never reused.  Deleting the store is always safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["objcache_command", "main"]

_STORE_ENV = "MPGEN_OBJCACHE_DIR"


def objcache_command(store: Path) -> str:
    """A one-word command for Verilator's ``OBJCACHE`` that caches into *store* (an
    executable script written there on first use; make variables cannot hold spaces)."""
    store.mkdir(parents=True, exist_ok=True)
    script = store / "mpgen-objcache"
    text = (f"#!/bin/sh\n{_STORE_ENV}='{store}' exec '{sys.executable}' "
            f"'{Path(__file__).resolve()}' \"$@\"\n")
    if not script.is_file() or script.read_text() != text:
        tmp = store / f".mpgen-objcache.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, script)
    return str(script)


def _compiler_id(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else cxx


def _plan(argv: list[str]) -> tuple[Path, Path, list[str]] | None:
    """(source, object, key arguments) of a cacheable compile of a run-time source, else None."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in argv or "-MMD" not in argv:
        return None
    sources = [a for a in argv if a.endswith((".cpp", ".cc", ".c"))]
    if len(sources) != 1:
        return None
    source = Path(sources[0]).resolve()
    if Path(root).resolve() / "include" not in source.parents:
        return None
    args = list(argv)
    if "-o" in args:
        i = args.index("-o")
        obj = Path(args[i + 1])
        del args[i:i + 2]
    else:
        obj = Path(source.stem + ".o")
    return source, obj, args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    store = os.environ.get(_STORE_ENV)
    plan = _plan(argv) if store and argv else None
    if plan is None:
        return subprocess.call(argv)
    source, obj, args = plan
    key = hashlib.sha256("\0".join([_compiler_id(argv[0]), *args]).encode()
                         + b"\0" + source.read_bytes()).hexdigest()
    entry = Path(store) / key[:2] / key
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel builds: one compiles, the others copy
        return _compile_or_copy(argv, entry, obj)


def _compile_or_copy(argv: list[str], entry: Path, obj: Path) -> int:
    dep = obj.with_suffix(".d")
    if (entry / "object.o").is_file() and (entry / "deps.d").is_file():
        shutil.copyfile(entry / "object.o", obj)
        dep.write_text((entry / "deps.d").read_text().replace("@OBJECT@", str(obj), 1))
        return 0
    code = subprocess.call(argv)
    if code != 0 or not obj.is_file() or not dep.is_file():
        return code
    deps = dep.read_text()
    head, sep, rest = deps.partition(":")
    cwd = Path.cwd().resolve()
    if not sep or str(cwd) in rest or any(not p.startswith("/") for p in rest.replace("\\\n", " ").split()):
        return code  # depends on something of this build: never shared
    tmp = Path(tempfile.mkdtemp(dir=entry.parent))
    shutil.copyfile(obj, tmp / "object.o")
    (tmp / "deps.d").write_text("@OBJECT@" + sep + rest)
    try:
        os.replace(tmp, entry)
    except OSError:  # another build stored it first
        shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
