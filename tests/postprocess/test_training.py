import numpy as np
import pytest

from vidgen.postprocess.training import batches


@pytest.mark.parametrize("pairs", ["prediction", "noise", "both"])
def test_batches_pair_frames_with_their_truth(pairs):
    rng = np.random.default_rng(0)
    truths = rng.random((3, 5, 8, 8, 1)).astype(np.float32)        # context 2 + horizon 3
    preds = rng.random((3, 3, 8, 8, 1)).astype(np.float32)
    x, y = next(batches(truths, preds, 2, pairs, window=3, batch_size=4, patch=8,
                        max_sigma=0.0, seed=0))
    assert x.shape == (4, 8, 8, 3) and y.shape == (4, 8, 8, 1)
    assert x.dtype == y.dtype == np.float32
    kinds = []
    for xi, yi in zip(x, y):
        [(c, t)] = [(c, t) for c in range(3) for t in range(5) if np.array_equal(truths[c, t], yi)]
        middle = xi[..., 1:2]   # the frame itself; neighbours in channels 0 and 2
        if t >= 2 and np.array_equal(middle, preds[c, t - 2]):
            kinds.append("prediction")
        else:
            # Noise pairs (sigma 0 here): the input frame is the true frame.
            np.testing.assert_array_equal(middle, truths[c, t])
            kinds.append("noise")
    expected = {"prediction": ["prediction"] * 4, "noise": ["noise"] * 4,
                "both": ["prediction"] * 2 + ["noise"] * 2}[pairs]
    assert kinds == expected
