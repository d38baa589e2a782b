import shutil

import numpy as np
import pytest

from tests.conftest import moving_square


@pytest.fixture(scope="package")
def post_run(tiny_run, tmp_path_factory):
    """A copy of the shared tiny run (16x16, 3 -> 3 frames) with a denoiser trained 3 steps."""
    from vidgen.postprocess.training import train_denoiser

    run = tmp_path_factory.mktemp("post") / "run"
    shutil.copytree(tiny_run, run)
    train_denoiser(str(run), clips=4, steps=3, minutes=0, batch_size=2, patch=8, filters=4,
                   depth=3, val_clips=2, progress=False)
    return str(run)


@pytest.fixture
def clip_npy(tmp_path):
    """An 8-frame uint8 .npy clip of a moving square, 16x16, one channel."""
    path = tmp_path / "clip.npy"
    np.save(path, moving_square(8, 16, 16, channels=1))
    return str(path)
