"""Where study caches live, and fingerprints of the code behind a cached value (torch-free).

* :func:`cache_root`: ``$MPGEN_CACHE`` if set; else ``<checkout>/build`` when running from a source
  checkout (the folder holding ``pyproject.toml`` next to ``golden/`` and ``models/``); else the
  user cache folder (``platformdirs.user_cache_dir("mpgen")`` if platformdirs is installed,
  otherwise ``~/.cache/mpgen``). Each study uses a sub-folder of it.
* :func:`source_fingerprint`: a SHA-256 over the source files of some modules and, transitively,
  every module of :data:`FINGERPRINT_PACKAGES` they import (module- and function-level imports,
  found by parsing the source, not by importing it). A cache keyed on settings *and* this
  fingerprint is not reused after the code that computed it changed.

This module sits in :mod:`mpgen.models`, the lowest layer a study cache needs (models and golden
are below sim/flows/studies, so any of them may use it), and imports nothing heavy.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "FINGERPRINT_PACKAGES", "cache_root", "source_checkout",
           "source_fingerprint", "module_sources"]

#: Environment variable naming the cache root.
CACHE_ENV = "MPGEN_CACHE"
#: Packages whose modules are followed when fingerprinting (the numerics behind cached values).
FINGERPRINT_PACKAGES = ("mpgen.golden", "mpgen.models")


def source_checkout() -> Path | None:
    """The source checkout this module runs from (editable install or ``PYTHONPATH``), or None
    for an installed copy."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "golden").is_dir() \
            and (repo / "models" / "cache.py").is_file():
        return repo
    return None


def cache_root() -> Path:
    """The root folder of mpgen's caches (see the module docstring); not created here."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    repo = source_checkout()
    if repo is not None:
        return repo / "build"
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "mpgen"
    return Path(platformdirs.user_cache_dir("mpgen"))


def _origin(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent that is not a package, or no such module
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(name: str, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` for every import in ``name``'s source (``import a.b``: ``("a.b", ())``;
    ``from .x import y, z``: ``("<package>.x", ("y", "z"))``), relative imports resolved."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            rel = "." * node.level + (node.module or "")
            try:
                base = importlib.util.resolve_name(rel, package) if node.level else node.module
            except (ImportError, ValueError):
                continue
            if base:
                out.append((base, tuple(a.name for a in node.names if a.name != "*")))
    return out


def _followed(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def module_sources(*modules: str, packages=FINGERPRINT_PACKAGES) -> dict[str, Path]:
    """``{module: source file}`` of ``modules`` and of every module under ``packages`` that they
    import, transitively. Nothing is imported but the parent packages of those modules.
    ValueError if one of ``modules`` has no Python source."""
    found: dict[str, Path] = {}
    for m in modules:
        path = _origin(m)
        if path is None:
            raise ValueError(f"no Python source for module {m!r}")
        found[m] = path
    todo = list(found)
    while todo:
        name = todo.pop()
        for base, names in _imports(name, found[name]):
            if not _followed(base, packages):
                continue
            cands = [base]
            if base not in found:
                path = _origin(base)
                if path is None:
                    continue
                found[base] = path
                todo.append(base)
            if found[base].name == "__init__.py":  # `from pkg import mod`: mod may be a module
                cands = [f"{base}.{n}" for n in names]
            for c in cands:
                if c not in found and (path := _origin(c)) is not None:
                    found[c] = path
                    todo.append(c)
    return dict(sorted(found.items()))


@functools.lru_cache(maxsize=None)
def _fingerprint(modules: tuple[str, ...], packages: tuple[str, ...], stamp: tuple) -> str:
    h = hashlib.sha256()
    for name, path in module_sources(*modules, packages=packages).items():
        h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def source_fingerprint(*modules: str, packages=FINGERPRINT_PACKAGES) -> str:
    """Hex SHA-256 over (module name, source bytes) of :func:`module_sources` ``(*modules)``.
    Recomputed whenever one of those files' size or modification time changes."""
    files = module_sources(*modules, packages=tuple(packages))
    stamp = tuple((n, p.stat().st_mtime_ns, p.stat().st_size) for n, p in files.items())
    return _fingerprint(tuple(modules), tuple(packages), stamp)
