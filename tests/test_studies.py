"""The studies package: every ``mpgen study NAME`` module has a ``main(argv)``, caches go under
``$MPGEN_CACHE`` and are keyed on a fingerprint of the code as well as the settings."""

from __future__ import annotations

import importlib
import sys

import pytest

from mpgen.models import cache as C


def test_every_study_has_a_main():
    from mpgen.flows import cli
    assert {"fgmp-policy", "fineq-accuracy", "fineq-area", "classifier-area", "classifier-widths",
            "format-accuracy", "model-energy"} <= set(cli.STUDIES)
    for name, (module, _) in cli.STUDIES.items():
        assert module.startswith("mpgen.studies."), name
        assert callable(importlib.import_module(module).main), name


@pytest.mark.parametrize("module", ["fgmp_study", "fineq_study", "model_energy", "classifier_widths",
                                    "format_accuracy"])
def test_model_studies_take_a_model_folder(module, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"mpgen.studies.{module}").main(["--help"])
    assert e.value.code == 0
    assert "--models DIR" in capsys.readouterr().out


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "c"))
    assert C.cache_root() == tmp_path / "c"
    from mpgen.studies import fgmp_study
    assert fgmp_study.default_cache_dir() == tmp_path / "c" / "fgmp_study"
    monkeypatch.delenv(C.CACHE_ENV)
    repo = C.source_checkout()
    assert C.cache_root() == (repo / "build" if repo is not None else C.cache_root())


def test_fingerprint_follows_imports_and_changes_with_the_source(tmp_path, monkeypatch):
    pkg = tmp_path / "fpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\ndef f():\n    from .c import g\n    return g\n")
    (pkg / "b.py").write_text("import json\nX = 1\n")
    (pkg / "c.py").write_text("def g():\n    return 2\n")
    (pkg / "unused.py").write_text("Y = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m == "fpkg" or m.startswith("fpkg.")]:
        monkeypatch.delitem(sys.modules, m)
    srcs = C.module_sources("fpkg.a", packages=("fpkg",))
    assert list(srcs) == ["fpkg", "fpkg.a", "fpkg.b", "fpkg.c"]  # function-level import included
    assert "fpkg.a" not in sys.modules  # found by parsing, not imported
    before = C.source_fingerprint("fpkg.a", packages=("fpkg",))
    assert C.source_fingerprint("fpkg.a", packages=("fpkg",)) == before
    (pkg / "unused.py").write_text("Y = 4\n")
    assert C.source_fingerprint("fpkg.a", packages=("fpkg",)) == before
    (pkg / "c.py").write_text("def g():\n    return 3  # changed\n")
    assert C.source_fingerprint("fpkg.a", packages=("fpkg",)) != before
    with pytest.raises(ValueError, match="no Python source"):
        C.module_sources("fpkg.nothing", packages=("fpkg",))


def test_fgmp_study_cache_key_includes_the_code(monkeypatch):
    from mpgen.studies import fgmp_study as S
    s = S.StudySettings()
    key = s.key("minilm", "minilm_eval_texts")
    assert key == s.key("minilm", "minilm_eval_texts")
    files = C.module_sources("mpgen.studies.fgmp_study")
    assert {"mpgen.golden.policy", "mpgen.models.fisher", "mpgen.studies.fgmp_study"} <= set(files)
    monkeypatch.setattr(S, "code_fingerprint", lambda: "0" * 64)
    assert s.key("minilm", "minilm_eval_texts") != key
