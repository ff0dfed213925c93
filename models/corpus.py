"""A text corpus that is available offline everywhere: English paragraphs of the docstrings of a
fixed list of Python standard-library modules (see ``docs/models.md``), split into disjoint
"calib" and "eval" parts by a hash of each paragraph's text.

Torch-free; :mod:`mpgen.models.minilm` re-exports :func:`text_corpus` and :data:`CORPUS_MODULES`.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import warnings

__all__ = ["CORPUS_MODULES", "text_corpus"]

#: Stable, long-lived pure-Python standard-library modules whose docstrings form the corpus
#: (modules with C implementations or heavy churn between 3.10 and 3.13 are left out).
CORPUS_MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "cmd", "codecs", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "difflib", "dis", "doctest", "email.message",
    "email.utils", "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools",
    "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser",
    "http.client", "http.cookiejar", "http.server", "imaplib", "inspect", "ipaddress",
    "json", "json.decoder", "json.encoder", "locale", "logging", "logging.handlers", "mailbox",
    "mimetypes", "netrc", "numbers", "operator", "optparse", "os", "pickle", "pickletools",
    "pkgutil", "platform", "poplib", "pprint", "pydoc", "queue", "quopri", "random", "re",
    "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket",
    "socketserver", "statistics", "string", "subprocess", "tabnanny", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing",
    "unittest.case", "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings",
    "wave", "weakref", "webbrowser", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile",
)
_MIN_CHARS, _MAX_CHARS = 60, 400
#: A paragraph is in the "eval" split iff sha256(text) mod this == 0 (so a paragraph's split
#: depends only on its text, not on which other paragraphs a Python version has).
_EVAL_MODULUS = 5
_SPLITS = ("calib", "eval")


def _docstrings(mod) -> list[str]:
    """The module's docstring, then those of its public classes/functions defined in it and of
    the public methods those classes define, in sorted name order."""
    docs = [mod.__doc__]
    for name in sorted(vars(mod)):
        obj = vars(mod)[name]
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj):
            docs.append(obj.__doc__)
            for mname in sorted(vars(obj)):
                meth = vars(obj)[mname]
                if mname.startswith("_"):
                    continue
                if isinstance(meth, (staticmethod, classmethod)):
                    meth = meth.__func__
                if inspect.isfunction(meth):
                    docs.append(meth.__doc__)
        elif inspect.isfunction(obj):
            docs.append(obj.__doc__)
    return [d for d in docs if isinstance(d, str)]


_SENTENCE_END = re.compile(r"[.!?]$")
_CODE_HINTS = (">>>", "::", "-->", "==", "()", "{", "}", "[", "]", "__", "`", "\\", "http", "|",
               "#", " = ", "*", "<", ">", "$", "%", "~", "'''", '"""')


def _paragraphs(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = para.split("\n")
        if any(ln.startswith((" ", "\t", "-", "+", "o ")) for ln in lines[1:]) \
                or lines[0].startswith((" ", "\t", "-", "+", ":", "@")):
            continue  # indented block, list, field list: usually code or a table
        text = " ".join(ln.strip() for ln in lines)
        text = re.sub(r"\s+", " ", text).strip()
        if not _MIN_CHARS <= len(text) <= _MAX_CHARS or not text[0].isupper():
            continue
        if not _SENTENCE_END.search(text) or any(h in text for h in _CODE_HINTS):
            continue
        letters = sum(c.isalpha() or c == " " for c in text)
        if letters < 0.9 * len(text):
            continue
        out.append(text)
    return out


_CORPUS_CACHE: list[str] | None = None


def _all_paragraphs() -> list[str]:
    global _CORPUS_CACHE
    if _CORPUS_CACHE is None:
        seen, out = set(), []
        for name in CORPUS_MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError:  # a module missing on some platform just contributes nothing
                continue
            with warnings.catch_warnings():  # e.g. typing.io's deprecation warning on access
                warnings.simplefilter("ignore", DeprecationWarning)
                docs = _docstrings(mod)
            for doc in docs:
                for p in _paragraphs(doc):
                    if p not in seen:
                        seen.add(p)
                        out.append(p)
        _CORPUS_CACHE = out
    return list(_CORPUS_CACHE)


def _split_of(text: str) -> str:
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return "eval" if h % _EVAL_MODULUS == 0 else "calib"


def text_corpus(split: str, n: int) -> list[str]:
    """The first ``n`` English paragraphs (60-400 characters, prose only) of the ``split``
    ("calib" or "eval") of the standard-library docstring corpus, in a fixed order (module list
    order, then sorted names). The splits are disjoint; a paragraph's split is a function of its
    text alone. Raises ValueError for an unknown split or if fewer than ``n`` paragraphs exist."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    texts = [p for p in _all_paragraphs() if _split_of(p) == split]
    if n > len(texts):
        raise ValueError(f"the {split!r} split has only {len(texts)} paragraphs, asked for {n}")
    return texts[:n]
