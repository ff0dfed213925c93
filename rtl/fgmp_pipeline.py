"""FGMP activation path: ``ActivationClassifier`` feeding ``BlockDotProduct``.

``ClassifierDotProduct`` quantizes a stream of activation blocks on the fly (NVFP4 or FP8 per
block, :mod:`mpgen.rtl.classifier`) and joins each classified block with a weight block from a
second stream (pre-quantized FGMP weights) into one block pair of
``BlockDotProduct(formats="mixed")``; results are FP32 dot products, without the per-tensor scales
(``docs/classifier.md`` §Integration says how the golden model applies them).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.constants import BLOCK
from mpgen.golden.formats import E4M3

from .classifier import ActivationClassifier
from .dotprod import BlockDotProduct, block_layout

__all__ = ["ClassifierDotProduct"]


class ClassifierDotProduct(wiring.Component):
    """Activation classifier + mixed-precision block dot product.

    Parameters: those of :class:`ActivationClassifier` (``input_format``, ``channels``,
    ``diff_frac_bits``, ``diff_bits``, ``p_bits``) and of the dot-product unit (``organisation``,
    ``pipeline``).

    Ports
    -----
    act : the classifier's input stream (16 activations, block ``index``, ``last`` closing a dot
        product).
    w : weight blocks, ``block_layout(8, 16, flag=True, scale=True)`` (E4M3 codes or E2M1 codes in
        the low 4 bits, ``fp8`` flag, UE4M3 scale), one per activation block, in the same order.
    cfg : the classifier's configuration stream.
    o : FP32 results, one per dot product.

    A block pair moves when both a classified activation block and a weight block are valid and
    the dot-product unit is ready. Latency ``3 + dotprod.latency`` cycles from an activation
    block's handshake (with its weight block present) to the result of a ``last`` pair (the
    classifier's latency is ``cycles_per_block + 3`` where that is above 1).
    """

    def __init__(self, input_format: str = "bf16", channels: int = 64, diff_frac_bits: int = 3,
                 diff_bits: int = 9, p_bits: int = 8, organisation: str = "split", pipeline: int = 2,
                 cycles_per_block: int = 1):
        self.classifier = ActivationClassifier(input_format=input_format, channels=channels,
                                               diff_frac_bits=diff_frac_bits, diff_bits=diff_bits,
                                               p_bits=p_bits, cycles_per_block=cycles_per_block)
        self.dotprod = BlockDotProduct(block_size=BLOCK, formats="mixed", organisation=organisation,
                                       pipeline=pipeline)
        self.latency = self.classifier.latency + self.dotprod.latency
        self.weight_layout = block_layout(E4M3.width, BLOCK, flag=True, scale=True)
        super().__init__({
            "act": In(stream.Signature(self.classifier.input_layout)),
            "w": In(stream.Signature(self.weight_layout)),
            "cfg": In(stream.Signature(self.classifier.cfg_layout)),
            "o": Out(stream.Signature(self.dotprod.o.payload.shape())),
        })

    @property
    def params(self) -> dict:
        return {**self.classifier.params, "organisation": self.dotprod.organisation,
                "pipeline": self.dotprod.pipeline}

    def elaborate(self, platform):
        m = Module()
        m.submodules.classifier = cls = self.classifier
        m.submodules.dotprod = dot = self.dotprod
        wiring.connect(m, wiring.flipped(self.act), cls.i)
        wiring.connect(m, wiring.flipped(self.cfg), cls.cfg)
        wiring.connect(m, dot.o, wiring.flipped(self.o))
        a = cls.o
        m.d.comb += [
            dot.i.payload.a.eq(a.payload.block),
            dot.i.payload.w.eq(self.w.payload),
            dot.i.payload.last.eq(a.payload.last),
            dot.i.valid.eq(a.valid & self.w.valid),
            a.ready.eq(dot.i.ready & self.w.valid),
            self.w.ready.eq(dot.i.ready & a.valid),
        ]
        return m
