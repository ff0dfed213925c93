"""Verilog emission for mpgen components.

Port naming (Amaranth 0.5, :func:`amaranth.back.verilog.convert` with ports taken
from the component's ``wiring`` signature): each leaf member becomes one port named
by joining its signature path with ``__``.  A ``stream.Signature`` member ``a`` gives
``a__payload``, ``a__valid``, ``a__ready``; a struct payload stays one packed vector
(first field in the least significant bits); an array member ``x[2]`` gives
``x__2...``.  A design with a ``sync`` domain also gets ``clk`` and ``rst`` (active-high,
synchronous reset).  Submodules become separate Verilog modules named
``<top>.<submodule name>`` (escaped identifiers such as ``\\top.lanes``), nested ones
``<top>.<a>.<b>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = ["to_verilog", "write_verilog", "port_names", "strip_source_locations"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SRC_ATTR = re.compile(r'\(\* src = "(?:[^"\\]|\\.)*" \*\)\s*')


def strip_source_locations(verilog_text: str) -> str:
    """*verilog_text* without its ``(* src = ... *)`` attributes (the Python source locations
    Amaranth records): what caches hash and tools read, so results do not depend on where
    mpgen is installed."""
    return _SRC_ATTR.sub("", verilog_text)


def _check(component, name: str) -> None:
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected an amaranth.lib.wiring.Component, not {type(component).__name__}")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"top module name must be a plain Verilog identifier, not {name!r}")


def port_names(component: wiring.Component) -> list[str]:
    """Verilog names of the signature ports of *component* (without ``clk``/``rst``)."""
    return ["__".join(map(str, path)) for path, _member, _value in
            component.signature.flatten(component)]


def to_verilog(component: wiring.Component, name: str, *, emit_src: bool = True) -> str:
    """Convert *component* to Verilog with top module *name*.

    Ports come from the wiring signature (see the module docstring for their names).
    ``emit_src=False`` drops the ``(* src = ... *)`` source-location attributes, which
    makes the text independent of where the Python sources live.
    """
    _check(component, name)
    return verilog.convert(component, name=name, emit_src=emit_src)


def write_verilog(component: wiring.Component, name: str, out_dir: Path | str, *,
                  emit_src: bool = True) -> Path:
    """Write ``<out_dir>/<name>.v`` (creating *out_dir*) and return its path."""
    text = to_verilog(component, name, emit_src=emit_src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.v"
    path.write_text(text)
    return path
