"""Building blocks of ``rtl/classifier.py`` checked on their own (the whole unit is checked by the
cocotb regression in ``test_classifier_sim.py``, which also sweeps every BF16/FP16 input code)."""

from fractions import Fraction

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from mpgen.rtl.classifier import rne_third, square


@pytest.mark.parametrize("sticky", [0, 1])
def test_rne_third_is_round_half_even_of_a_third(sticky):
    """The FP8 encoder's table: RNE((b/2 + e)/3) for every 7-bit b it sees, e = 0 or any
    remainder in (0, 1/2) (both ends of that range must give the same rounding)."""
    for b in range(96):
        for e in ([Fraction(0)] if not sticky else [Fraction(1, 1000), Fraction(499, 1000)]):
            assert rne_third(b, sticky) == round((Fraction(b, 2) + e) / 3), (b, e)


def test_square_rows_equal_the_product():
    """``square`` (the squarer's rows, each cross product once) equals x·x for every 9-bit x."""
    x = Signal(9)
    y = Signal(18)
    m = Module()
    m.d.comb += y.eq(square(x))
    sim = Simulator(m)
    seen = []

    async def bench(ctx):
        for v in range(1 << 9):
            ctx.set(x, v)
            seen.append((v, ctx.get(y)))

    sim.add_testbench(bench)
    sim.run()
    assert seen == [(v, v * v) for v in range(1 << 9)]
