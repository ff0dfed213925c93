"""ABC's own static timing (``stime``) of a mapped netlist: the independent reference the
timing tests compare :mod:`mpgen.flows.timing` with (needs a native ``yosys-abc``; Debian's
``yosys`` package ships one).

The registers are cut (their outputs become inputs, their inputs outputs), because ABC times
combinational logic; the same cut netlist is timed by mpgen with the same conventions (input
transition 0, output load 0), so both tools see exactly the same gates and loads.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from mpgen.flows.timing import TimingLibrary

ABC = shutil.which("yosys-abc")


def combinational_cut(module: dict, lib: TimingLibrary) -> dict:
    """*module* without its sequential cells: their output nets become input ports, their
    input nets output ports; the logic cells in topological order (ABC wants that)."""
    ins, outs, cells = set(), set(), {}
    for name, c in module["cells"].items():
        cell = lib.cells[c["type"]]
        if cell.sequential:
            for pin, bits in c["connections"].items():
                for b in bits:
                    if isinstance(b, int):
                        (ins if pin in cell.outputs else outs).add(b)
        else:
            cells[name] = c
    for p in module["ports"].values():
        for b in p["bits"]:
            if isinstance(b, int):
                (ins if p["direction"] == "input" else outs).add(b)
    driver = {c["connections"][pin][0]: name for name, c in cells.items()
              for pin in lib.cells[c["type"]].outputs if pin in c["connections"]}
    order, seen = [], set()
    sys.setrecursionlimit(max(10_000, 4 * len(cells)))

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        c = cells[name]
        for pin, bits in c["connections"].items():
            if pin not in lib.cells[c["type"]].outputs and bits[0] in driver:
                visit(driver[bits[0]])
        order.append(name)

    for name in cells:
        visit(name)
    ports = {f"n{b}": {"direction": "input", "bits": [b]} for b in sorted(ins)}
    ports.update({f"n{b}": {"direction": "output", "bits": [b]} for b in sorted(outs - ins)})
    return {"cells": {n: cells[n] for n in order}, "ports": ports, "netnames": {}}


def _net(b) -> str:
    return f"n{b}" if isinstance(b, int) else ("1'b1" if b == "1" else "1'b0")


def mapped_verilog(cut: dict) -> str:
    """Structural Verilog of a :func:`combinational_cut` (library cells, named ports)."""
    ports = cut["ports"]
    wires = {b for c in cut["cells"].values() for bits in c["connections"].values()
             for b in bits if isinstance(b, int)} - {p["bits"][0] for p in ports.values()}
    lines = [f"module comb({', '.join(ports)});"]
    lines += [f"  {p['direction']} {name};" for name, p in ports.items()]
    lines += [f"  wire n{b};" for b in sorted(wires)]
    for name, c in cut["cells"].items():
        conns = ", ".join(f".{pin}({_net(bits[0])})" for pin, bits in c["connections"].items())
        lines.append(f"  {c['type']} g_{name} ({conns});")
    return "\n".join(lines + ["endmodule", ""])


def abc_stime_ns(cut: dict, liberty: Path, work_dir: Path) -> float:
    """ABC's critical-path delay (ns) of *cut*, from ``stime -p``."""
    (work_dir / "comb.v").write_text(mapped_verilog(cut))
    script = f"read_lib -w {liberty}; read_verilog -m comb.v; topo; stime -p"
    proc = subprocess.run([ABC, "-c", script], cwd=work_dir, capture_output=True, text=True,
                          timeout=600)
    m = re.search(r"Delay\s*=\s*([0-9.]+)\s*ps", re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout))
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"yosys-abc stime failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return float(m.group(1)) / 1000.0
