import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("head", ["sdna", "cdna"])
def test_one_and_two_replicas_give_the_same_loss_and_gradients(head):
    """MirroredStrategy over two logical CPUs vs the default strategy, same global batch."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "training",
                                                          "replica_check.py"), head],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["max_grad"] > 1e-4  # the gradients are not trivially zero
    assert out["max_grad_diff"] <= 1e-5
    for key in ("loss", "val_loss", "val_frame_mse"):
        assert abs(out["single"][key] - out["double"][key]) <= 1e-5 * max(
            1.0, abs(out["single"][key])), key
