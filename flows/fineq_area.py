"""Registry pieces of the FineQ temporal-coded array (:class:`mpgen.rtl.fineq.FineQArray`): the
CLI factory and regression entry point, its named configurations and area breakdown groups.

The area × cycles study of these designs against multiplier baselines is
:mod:`mpgen.studies.fineq_area` (``mpgen study fineq-area``).
"""

from __future__ import annotations

__all__ = ["AREA_GROUPS", "DEFAULT_CONFIGS", "fineq_factory", "fineq_regression"]

#: Breakdown groups (submodule name patterns, ``"(top)"`` = the array's own glue logic).
AREA_GROUPS = {
    "decoders": ["decoder_*"],
    "PEs": ["pe_*"],
    "control & pipeline": ["(top)"],  # activation skew, output deskew, phase, load select, valid
}

#: Named configurations for the CLI (``mpgen run fineq`` covers these).
DEFAULT_CONFIGS = {
    "fineq-8x8": {"rows": 8, "cols": 8, "pe": "temporal", "coding": "unary"},
    "fineq-bitserial-8x8": {"rows": 8, "cols": 8, "pe": "temporal", "coding": "bitserial"},
    "fineq-mul-8x8": {"rows": 8, "cols": 8, "pe": "multiplier"},
    "w4a8-8x8": {"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 4},
    "w8a8-8x8": {"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 8},
}


def fineq_factory(**params):
    """The CLI factory: a :class:`~mpgen.rtl.fineq.FineQArray`."""
    from mpgen.rtl.fineq import FineQArray
    return FineQArray(**params)


def fineq_regression(config, **kw):
    """The CLI regression entry point (:func:`mpgen.sim.fineq.run_fineq_regression`)."""
    from mpgen.sim.fineq import run_fineq_regression
    return run_fineq_regression(config, **kw)
