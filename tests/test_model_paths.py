"""Where model files come from (mpgen.models.paths): an explicit folder or $MPGEN_MODELS, nothing
else, and an error that names both ways when a needed model is missing."""

from __future__ import annotations

import pytest

from mpgen.models.paths import (MODELS_ENV, STORIES260K, ModelNotFoundError, find_model_file,
                                model_file, resolve_models_dir)


def test_explicit_folder_wins_over_environment(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / STORIES260K).write_bytes(b"x")
    monkeypatch.setenv(MODELS_ENV, str(b))
    assert resolve_models_dir(a) == a and resolve_models_dir() == b
    assert model_file(STORIES260K, a) == a / STORIES260K
    with pytest.raises(ModelNotFoundError, match=f"not found in {b} .*{MODELS_ENV}"):
        model_file(STORIES260K)
    monkeypatch.setenv(MODELS_ENV, str(a))
    assert model_file(STORIES260K) == a / STORIES260K


def test_no_folder_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert resolve_models_dir() is None and find_model_file(STORIES260K) is None
    with pytest.raises(ModelNotFoundError, match="--models DIR.*MPGEN_MODELS") as e:
        model_file(STORIES260K)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        model_file(STORIES260K, tmp_path / "absent")
