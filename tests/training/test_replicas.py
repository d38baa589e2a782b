import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sdna", "cdna", "gan"])
def test_one_and_two_replicas_give_the_same_loss_and_gradients(mode):
    """MirroredStrategy over two logical CPUs vs the default strategy, same global batch.

    For the GAN this covers every hand-reduced term (critic loss, adversarial and
    feature-matching terms): the weight change of generator and critics is compared.
    """
    result = subprocess.run([sys.executable, "-m", "tests.training.replica_check", mode],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["max_grad"] > 1e-4  # the gradients are not trivially zero
    assert out["max_grad_diff"] <= 1e-5
    assert set(out["single"]) == set(out["double"])
    for key, value in out["single"].items():
        assert abs(value - out["double"][key]) <= 1e-5 * max(1.0, abs(value)), key
