"""Hooks on the import of Keras and TensorFlow, so that importing vidgen costs neither.

Importing TensorFlow takes about 3 s and 400 MB here; the LiteRT runner
(`vidgen-export run-tflite`) and every `--help` need none of it, and a
device with only `vidgen[lite]` installed has no TensorFlow at all. Two
hooks make that possible without changing what users rely on:

- `register_keras_classes()`: vidgen's Keras classes register themselves
  when Keras is imported (at once if it already is), so that
  `import vidgen; keras.saving.load_model("RUN/model.keras")` works as
  before without `import vidgen` importing Keras.
- `quiet_tensorflow_import()`: TensorFlow writes its start-up log (oneDNN,
  CUDA, cuInit) from C++ straight to file descriptor 2, before any log level
  applies (TF_CPP_MIN_LOG_LEVEL does not silence it in TF 2.21); the command
  lines discard it, unless `-v`, by pointing descriptor 2 at /dev/null while
  TensorFlow loads and finds its devices.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import os
import sys
from collections.abc import Callable, Iterator
from typing import Optional

# The modules whose import registers vidgen's serializable classes (models and
# layers, the denoiser, the learning-rate schedule, the losses).
KERAS_MODULES = ("vidgen.models", "vidgen.postprocess.residual_denoiser",
                 "vidgen.training.budget_cosine_decay", "vidgen.training.losses")


class _WrappedLoader(importlib.abc.Loader):
    """Runs a module's own loader inside `around()`, then `after(module)`."""

    def __init__(self, loader, around: Callable, after: Optional[Callable]):
        self._loader = loader
        self._around = around
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self._around():
            self._loader.exec_module(module)
            if self._after is not None:
                self._after(module)

    def __getattr__(self, name):
        # is_package, get_code, get_resource_reader...: the real loader's.
        return getattr(self._loader, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Wraps the loading of one top-level module, the first time it is imported."""

    def __init__(self, name: str, around: Callable, after: Optional[Callable] = None):
        self.name = name
        self._around = around
        self._after = after

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self not in sys.meta_path:
            return None
        # The finders after this one find the module as they would without the hook.
        spec = None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _WrappedLoader(spec.loader, self._around, self._done)
        return spec

    def _done(self, module) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        if self._after is not None:
            self._after(module)


def _installed(name: str) -> bool:
    return any(isinstance(f, _ImportHook) and f.name == name for f in sys.meta_path)


def _register(_module=None) -> None:
    for name in KERAS_MODULES:
        importlib.import_module(name)


def register_keras_classes() -> None:
    """Registers vidgen's Keras classes now if Keras is loaded, else when it loads."""
    if "keras" in sys.modules:
        _register()
    elif not _installed("keras"):
        sys.meta_path.insert(0, _ImportHook("keras", contextlib.nullcontext, _register))


@contextlib.contextmanager
def stderr_discarded() -> Iterator[None]:
    """File descriptor 2 points at /dev/null meanwhile (C++ writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _find_devices(tf) -> None:
    # Finding the devices is what logs "failed call to cuInit" on a machine without a GPU;
    # listing them does not initialise the runtime (strategies, threads can still be set).
    tf.config.list_physical_devices()


def quiet_tensorflow_import() -> None:
    """Discards TensorFlow's C++ start-up log when (and if) TensorFlow is imported.

    Errors still surface: an exception raised while importing is reported
    after descriptor 2 is restored, and later C++ messages follow
    TF_CPP_MIN_LOG_LEVEL.
    """
    if "tensorflow" not in sys.modules and not _installed("tensorflow"):
        sys.meta_path.insert(0, _ImportHook("tensorflow", stderr_discarded, _find_devices))
