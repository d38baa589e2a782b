import os

import pytest

from tests.tiny import tiny_run_config


@pytest.fixture(scope="package")
def tiny_model(tiny_run):
    from vidgen.run_dir import load_run

    return load_run(tiny_run)


@pytest.fixture(scope="package")
def float_tflite(tiny_run, tmp_path_factory):
    """The float32 step and sequence models of `tiny_run`, with the parity report."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite")
    return export_tflite(tiny_run, "float32", out_dir=str(out), report_clips=4)


@pytest.fixture(scope="package")
def int8_tflite(tiny_run, tmp_path_factory):
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite_int8")
    return export_tflite(tiny_run, "int8", out_dir=str(out), calibration_clips=4,
                         report_clips=4)


@pytest.fixture(scope="package")
def stochastic_run(tmp_path_factory):
    """Like `tiny_run`, with a latent variable (latent_dim 2): a model that samples futures."""
    from vidgen.training.build import build_model

    run = tmp_path_factory.mktemp("stochastic_run")
    cfg = tiny_run_config(**{"model.latent_dim": 2, "model.head": "sdna"})
    build_model(cfg).save(os.path.join(run, "model.keras"))
    cfg.to_json(os.path.join(run, "config.json"))
    return str(run)
