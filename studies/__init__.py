"""mpgen.studies: the model and design studies that regenerate the tables in ``docs/``.

Each study module has a ``main(argv) -> int`` (``mpgen study NAME [ARGS]`` or
``python -m mpgen.studies.MODULE``):

* :mod:`mpgen.studies.fgmp_study` (``fgmp-policy``) – the FGMP precision policy vs baselines on
  the real models (docs/fgmp_policy.md);
* :mod:`mpgen.studies.model_energy` (``model-energy``) – the policy's block-precision mix, the
  model-level energy from measured per-mode energies, quality vs FP4 fraction;
* :mod:`mpgen.studies.fineq_study` (``fineq-accuracy``) – FineQ vs RTN INT2/3/4 on real weights
  (docs/fineq.md);
* :mod:`mpgen.studies.fineq_area` (``fineq-area``) – the FineQ temporal array vs multiplier
  baselines: area and cycles (docs/fineq_hw.md);
* :mod:`mpgen.studies.classifier_area` (``classifier-area``) – the activation classifier vs the
  dot-product unit it feeds: area (docs/classifier.md);
* :mod:`mpgen.studies.classifier_widths` (``classifier-widths``) – narrower classifier score
  widths: how many block decisions they keep (docs/classifier.md);
* :mod:`mpgen.studies.format_accuracy` (``format-accuracy``) – BlockDialect vs MXFP4 vs NVFP4
  with weights and activations quantized, on the real models (docs/blockdialect.md);
* :mod:`mpgen.studies.resq_accuracy` (``resq-accuracy``) – ResQ (PCA basis, 1/8 at 8 bits) vs
  RTN W4A4 / W8A8 and FGMP on the real models (docs/resq.md).

Layering: studies is the top layer (it may import golden, models, rtl, sim and flows); nothing
below imports it except the CLI's study dispatch (and the report's model section). Model files
come from ``--models DIR`` / ``$MPGEN_MODELS`` (:mod:`mpgen.models.paths`), caches go under
:func:`mpgen.models.cache.cache_root` (``$MPGEN_CACHE``).
"""
