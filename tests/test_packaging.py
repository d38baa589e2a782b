"""Packaging: declared dependencies against the lock, light imports, --version, quiet start-up."""

import importlib
import os
import platform
import re
import subprocess
import sys
import time
import tomllib
from importlib import metadata

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import vidgen
from vidgen.cli_common import run_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ("oneDNN custom operations", "cuInit", "absl::InitializeLog", "cudart_stub",
         "cpu_feature_guard")


def project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def lock() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[canonicalize_name(name)] = version
    return pins


def declared() -> dict[str, list[Requirement]]:
    p = project()
    groups = {"dependencies": p["dependencies"], **p["optional-dependencies"]}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def test_the_lock_satisfies_every_declared_range():
    pins, groups = lock(), declared()
    ranges = {canonicalize_name(r.name): r for reqs in groups.values() for r in reqs
              if canonicalize_name(r.name) != "vidgen"}
    # Every declared package is pinned, at a version its range holds.
    assert set(ranges) <= set(pins), set(ranges) - set(pins)
    for name, requirement in ranges.items():
        assert requirement.specifier.contains(pins[name]), (name, pins[name], requirement)


def test_the_lock_is_closed_and_is_what_is_installed():
    """Every requirement of a pinned package is pinned too, at a version that satisfies it.

    So `pip install -r requirements.txt` resolves nothing on its own: the lock is the
    whole environment. Read from the installed packages' metadata, which `make` installed
    from this file (a pin that differs from what is installed fails here first).
    """
    pins = lock()
    missing, unsatisfied = [], []
    for name, version in pins.items():
        installed = metadata.distribution(name)
        assert installed.version == version, (name, installed.version, version)
        for line in installed.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pins:
                missing.append(f"{name} -> {requirement}")
            elif not requirement.specifier.contains(pins[dependency], prereleases=True):
                unsatisfied.append(f"{name} -> {requirement} (locked {pins[dependency]})")
    assert missing == [] and unsatisfied == [], (missing, unsatisfied)


def test_lite_is_the_runner_without_tensorflow():
    groups = {g: {canonicalize_name(r.name) for r in reqs} for g, reqs in declared().items()}
    lite = groups["dependencies"] | groups["lite"]
    assert lite == {"numpy", "opencv-python-headless", "imageio", "imageio-ffmpeg",
                    "ai-edge-litert"}
    assert {"tensorflow", "keras", "tensorflow-serving-api"} <= groups["full"]
    assert "vidgen[lite]" in project()["optional-dependencies"]["full"]
    assert groups["dev"] == {"pytest", "hypothesis", "ruff", "scikit-image"}


def python(code: str, env: dict | None = None, timeout: float = 300):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def test_importing_vidgen_and_the_command_lines_imports_no_tensorflow():
    result = python("import sys, vidgen, vidgen.cli, vidgen.generate, export.cli, "
                    "export.runner, serving.cli\n"
                    "print(sorted(m for m in ('tensorflow', 'keras', 'scipy') "
                    "if m in sys.modules))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("imports", ["import vidgen, keras",
                                     "import keras, vidgen",
                                     "import vidgen, tensorflow, keras"])
def test_import_vidgen_then_load_model(tiny_run, imports):
    """`import vidgen` registers the classes whenever Keras is imported, before or after."""
    path = os.path.join(tiny_run, "model.keras")
    result = python(f"{imports}\nm = keras.saving.load_model({path!r})\n"
                    "print(type(m).__name__, m.frame_size)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["VideoPredictor", "16"]


@pytest.mark.parametrize("argv", [["vidgen.cli", "--help"], ["vidgen.cli", "train", "--help"],
                                  ["vidgen.cli", "generate", "--help"],
                                  ["export.cli", "--help"], ["export.cli", "tflite", "--help"],
                                  ["export.cli", "run-tflite", "--help"],
                                  ["serving.cli", "--help"], ["serving.cli", "start", "--help"],
                                  ["serving.cli", "predict", "--help"]])
def test_help_imports_no_tensorflow(argv):
    code = (f"import importlib, sys\ntry:\n    importlib.import_module({argv[0]!r}).main("
            f"{argv[1:]!r})\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('TF', 'tensorflow' in sys.modules or 'keras' in sys.modules)")
    started = time.perf_counter()
    result = python(code)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and result.stdout.strip().endswith("TF False")
    # Importing TensorFlow alone takes about 3 s here; the whole --help about 0.2 s.
    assert seconds < 2.5, seconds


@pytest.mark.parametrize("module, prog", [("vidgen.cli", "vidgen"),
                                          ("export.cli", "vidgen-export"),
                                          ("serving.cli", "vidgen-serve")])
def test_version(module, prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {vidgen.__version__}"


def test_tensorflow_start_up_log_only_with_verbose(tiny_run, tmp_path):
    """A command that imports TensorFlow and finds its devices: quiet, unless -v."""
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((6, 16, 16), np.uint8))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    outputs = {}
    for flags in ([], ["-v"]):
        argv = flags + ["generate", tiny_run, "--input", str(clip), "--context", "3",
                        "--horizon", "2", "--out", str(tmp_path / "out.gif")]
        result = subprocess.run([sys.executable, "-m", "vidgen.cli"] + argv, env=env,
                                capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[bool(flags)] = result.stderr
    assert not [n for n in NOISE if n in outputs[False]], outputs[False][-3000:]
    assert not re.search(r"^[IWE]\d{4} ", outputs[False], re.M), outputs[False][-3000:]
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        # The log is there to hide: TensorFlow 2.21 prints it on this platform.
        assert "oneDNN custom operations" in outputs[True]


def test_a_missing_full_dependency_is_one_line(capsys):
    class Args:
        @staticmethod
        def func(_):
            raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    assert run_command("vidgen", Args()) == 2
    err = capsys.readouterr().err
    assert "needs 'tensorflow', which is not installed" in err
    assert 'pip install "vidgen[full]"' in err

    class Lite:
        @staticmethod
        def func(_):
            raise ModuleNotFoundError("No module named 'ai_edge_litert'", name="ai_edge_litert")

    assert run_command("vidgen-export", Lite()) == 2
    err = capsys.readouterr().err
    assert "needs 'ai_edge_litert', which is not installed" in err
    assert 'pip install "vidgen[lite]"' in err

    class Other:
        @staticmethod
        def func(_):
            raise ModuleNotFoundError("No module named 'nope'", name="nope")

    with pytest.raises(ModuleNotFoundError):   # a bug, not a missing extra: the traceback
        run_command("vidgen", Other())
