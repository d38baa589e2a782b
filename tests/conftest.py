import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.tiny import TINY_DATA, TINY_TRAIN, tiny_run_config  # noqa: E402
from tests.tiny import TINY_MODEL as _TINY_MODEL  # noqa: E402
from vidgen.config import Config, DataConfig, TrainConfig  # noqa: E402
from vidgen.run_dir import RunPaths  # noqa: E402


def tiny_config(**data) -> Config:
    """The tiny data (`tests.tiny.TINY_DATA`) with 2 predicted frames; `data` changes fields."""
    values = {**TINY_DATA, "horizon": 2, **data}
    return Config(data=DataConfig(**values),
                  train=TrainConfig(batch_size=TINY_TRAIN["batch_size"])).validate()


def moving_square(num_frames: int, height: int, width: int, channels: int = 3,
                  phase: int = 0) -> np.ndarray:
    """uint8 (T, H, W, C): a bright square moving right on a dark gradient."""
    frames = np.zeros((num_frames, height, width, channels), np.uint8)
    frames += np.linspace(0, 60, width, dtype=np.uint8)[None, None, :, None]
    side = max(2, height // 4)
    for t in range(num_frames):
        x = (phase + 2 * t) % (width - side)
        frames[t, height // 3:height // 3 + side, x:x + side] = 230
    return frames


def write_mp4(path, frames: np.ndarray, fps: float = 10.0) -> str:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture
def video_dir(tmp_path):
    """Four tiny mp4 clips (32x48, 24 frames) in one folder."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(4):
        write_mp4(folder / f"clip{i}.mp4", moving_square(24, 32, 48, phase=3 * i))
    return str(folder)


# The tiny model of tests/models: TINY_MODEL with two ConvLSTM levels.
TINY_MODEL = {**_TINY_MODEL, "core_filters": (8, 8)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with config.json and a small trained-shape (untrained) model.keras.

    Its data is the synthetic digits source, generated on the fly (16x16, 3 -> 3 frames).
    Shared by the test packages: copy it before writing into it.
    """
    from vidgen.training.build import build_model

    run = tmp_path_factory.mktemp("run")
    cfg = tiny_run_config()
    model = build_model(cfg)
    # Move the weights away from their initial values so parity is tested on a
    # model whose every weight matters.
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(np.asarray(w) + rng.normal(0, 0.05, w.shape).astype("float32"))
    cfg.to_json(RunPaths(str(run)).config)
    model.save(RunPaths(str(run)).model)
    return str(run)


@pytest.fixture(autouse=True)
def _command_line_logging_ends_with_the_test():
    """A command line run in a test (`main([...])`) configures logging for the process:
    undo it afterwards, so background threads of later tests do not print between tests."""
    import logging

    from vidgen.cli_common import PROJECT_LOGGERS, _StderrHandler

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
