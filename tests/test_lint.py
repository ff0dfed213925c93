"""Lint of the generated Verilog: ``verilator --lint-only -Wall`` leaves no warning on any default
configuration of any unit, with the waivers of ``sim/lint.vlt`` (the only place waivers live), and
the lint does fail on a design that has a real problem."""

import re

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mpgen.rtl.emit import to_verilog
from mpgen.sim.lint import LINT_CONFIG, LintError, lint_component, lint_verilog, warning_rules

pytestmark = pytest.mark.sim


def _unit_configs():
    """(unit, configuration, build()) for every default configuration of every registered unit."""
    from mpgen.flows import units as registry
    if hasattr(registry, "units"):  # the registry of unit plug-ins (UnitSpec.configs / .build)
        found = [(name, cfg, lambda s=spec, p=params: s.build(p))
                 for name, spec in registry.units().items() for cfg, params in spec.configs.items()]
    else:  # the earlier registry: UNITS of UnitSpec with factory / default_configs
        found = [(name, cfg, lambda s=spec, p=params: s.factory(**p))
                 for name, spec in registry.UNITS.items()
                 for cfg, params in spec.default_configs.items()]
    if not any(name == "fgmp_pipeline" for name, _, _ in found):
        from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct
        found.append(("fgmp_pipeline", "default", ClassifierDotProduct))
    return found


UNIT_CONFIGS = _unit_configs()


@pytest.mark.parametrize("unit,config,build", UNIT_CONFIGS,
                         ids=[f"{unit}-{config}" for unit, config, _ in UNIT_CONFIGS])
def test_unit_verilog_is_lint_clean(unit, config, build):
    top = re.sub(r"\W", "_", unit)
    warnings = lint_component(build(), top)
    assert warnings == [], (f"{unit} {config}: {len(warnings)} lint warning(s) "
                            f"{dict(warning_rules(warnings))}; fix the RTL or add a waiver with its "
                            f"reason to {LINT_CONFIG}:\n" + "\n".join(warnings[:40]))


def test_every_unit_is_linted():
    units = {unit for unit, _, _ in UNIT_CONFIGS}
    assert {"dotprod", "classifier", "fineq", "fgmp_pipeline"} <= units


class _Sloppy(wiring.Component):
    """An input never read, half of another input ignored, a register never read."""

    a: In(8)
    b: In(4)
    c: In(8)
    o: Out(4)

    def elaborate(self, platform):
        m = Module()
        stale = Signal(8, name="stale")
        m.d.sync += stale.eq(self.a)
        m.d.comb += self.o.eq(self.c[:4])
        return m


class _Tidy(wiring.Component):
    """Every input bit used; a named intermediate (an Amaranth debug wire) and a register."""

    a: In(8)
    o: Out(9)

    def elaborate(self, platform):
        m = Module()
        total = Signal(9, name="total")
        held = Signal(9, name="held")
        m.d.comb += total.eq(self.a + 1)
        m.d.sync += held.eq(total)
        m.d.comb += self.o.eq(held)
        return m


def test_lint_reports_real_problems():
    warnings = lint_component(_Sloppy(), "sloppy")
    text = "\n".join(warnings)
    assert "Signal is not used: 'b'" in text  # an input port nobody reads
    assert "Bits of signal are not used: 'c'[7:4]" in text  # half of an input ignored
    assert "Signal is not used: 'stale'" in text  # a register nobody reads
    assert all(w.startswith("%Warning-UNUSEDSIGNAL: sloppy.v:") for w in warnings), warnings


def test_waivers_cover_only_back_end_patterns():
    text = to_verilog(_Tidy(), "tidy")
    assert lint_verilog(text, "tidy") == []
    unwaived = warning_rules(lint_verilog(text, "tidy", config=None))
    # what the waivers take away here: Amaranth's named-but-unread wires, init values in declarations
    assert unwaived["UNUSEDSIGNAL"] >= 1 and unwaived["PROCASSINIT"] >= 1, unwaived


def test_lint_config_gives_every_waiver_a_reason():
    lines = LINT_CONFIG.read_text().splitlines()
    assert lines[0].strip() == "`verilator_config"
    waivers = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("//")][1:]
    assert waivers
    for i in waivers:
        assert lines[i].startswith("lint_off -rule "), lines[i]
        assert '-match "' in lines[i], f"waiver without -match (a whole rule): {lines[i]}"
        assert lines[i - 1].startswith("//"), f"waiver without a reason above it: {lines[i]}"


def test_lint_error_is_raised_not_returned():
    with pytest.raises(LintError, match="failed"):
        lint_verilog("module broken(input a;\nendmodule\n", "broken")
