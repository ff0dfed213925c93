"""Layering: the RTL generators stand on the torch-free part of the golden model.

``mpgen.rtl`` reads format geometry and constants from :mod:`mpgen.golden.formats`,
:mod:`mpgen.golden.constants`, :mod:`mpgen.golden.classifier_config` and
:mod:`mpgen.golden.fineq_format`; none of them imports torch, so generating Verilog does not
either. Each check runs in a fresh interpreter (this one has torch loaded already).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

RTL_MODULES = ("mpgen.rtl.arith", "mpgen.rtl.dotprod", "mpgen.rtl.classifier", "mpgen.rtl.fineq",
               "mpgen.rtl.fgmp_pipeline", "mpgen.rtl.emit")


def _run(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rtl_does_not_import_torch():
    _run(f"""
        import sys
        import {", ".join(RTL_MODULES)}
        assert 'torch' not in sys.modules, 'importing mpgen.rtl imported torch'
    """)
    _run("""
        import sys
        from mpgen.rtl.dotprod import BlockDotProduct
        from mpgen.rtl.emit import to_verilog
        text = to_verilog(BlockDotProduct(formats="mixed"), "dotprod_mixed", emit_src=False)
        assert "module dotprod_mixed" in text
        assert 'torch' not in sys.modules, 'generating Verilog imported torch'
    """)


def test_rtl_components_build_without_torch():
    """Every generator's default component elaborates to Verilog without torch."""
    _run("""
        import sys
        from mpgen.rtl.classifier import ActivationClassifier
        from mpgen.rtl.emit import to_verilog
        from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct
        from mpgen.rtl.fineq import FineQArray
        for name, comp in (("classifier", ActivationClassifier()), ("pipeline", ClassifierDotProduct()),
                           ("fineq", FineQArray(3, 2))):
            assert f"module {name}" in to_verilog(comp, name, emit_src=False)
        assert 'torch' not in sys.modules, 'building the RTL imported torch'
    """)
