"""bench.anomaly's pure parts: the rank-based ROC AUC and the labelling of injected anomalies."""

import json

import numpy as np
import pytest

from bench import anomaly as A
from vidgen.errors import VidgenError

CONTEXT = 4


def test_auc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)   # many ties
    labels = rng.random(200) < 0.2
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert A.roc_auc(scores, labels) == pytest.approx(pairs)
    assert A.roc_auc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert A.roc_auc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert A.roc_auc([0.5] * 4, [0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="positives and negatives"):
        A.roc_auc([0.1, 0.2], [1, 1])


def indexed_clip(frames: int, size: int = 16) -> np.ndarray:
    """uint8 (T, size, size, 3) whose frame t is filled with the value t: sources are visible."""
    return np.repeat(np.arange(frames, dtype=np.uint8), size * size * 3).reshape(
        frames, size, size, 3)


def test_injection_labels_and_sources():
    clip = indexed_clip(110)
    out = A.inject(clip, CONTEXT, seed=3)
    assert len(out.frames) == len(out.labels) == len(out.sources) == 110 - 30 + 20
    assert {e["kind"] for e in out.events} == set(A.KINDS)
    assert not out.labels[:CONTEXT + A.MIN_GAP].any()
    assert out.labels.sum() == A.OBJECT_FRAMES + 1 + A.REVERSE_FRAMES
    assert ((out.kinds != "") == (out.labels == 1)).all()
    for e in out.events:
        span = np.arange(e["first"], e["last"] + 1)
        assert (out.kinds[span] == e["kind"]).all()
        assert out.kinds[e["first"] - 1] == "" and out.kinds[e["last"] + 1] == ""
        before, seg, after = out.sources[e["first"] - 1], out.sources[span], out.sources[
            e["last"] + 1]
        if e["kind"] == "jump":
            assert len(seg) == 1 and seg[0] - before == A.JUMP_FRAMES + 1 and after == seg[0] + 1
        elif e["kind"] == "reverse":
            # Backwards from the frame before, then forwards again with no cut.
            assert (np.diff(np.concatenate([[before], seg])) == -1).all() and after == seg[-1] + 1
        else:
            assert (np.diff(np.concatenate([[before], seg, [after]])) == 1).all()
            for t in span:
                changed = out.frames[t] != clip[out.sources[t]]
                assert changed.any(axis=-1).sum() == e["side"] ** 2
    # Every frame outside the object is its source frame, unchanged.
    plain = out.kinds != "object"
    np.testing.assert_array_equal(out.frames[plain], clip[out.sources[plain]])
    # Seeded: the same seed, the same injections.
    again = A.inject(clip, CONTEXT, seed=3)
    json.dumps(out.events)   # written to anomaly.json as they are
    assert again.events == out.events and (again.frames == out.frames).all()


def test_the_object_moves_against_a_pan():
    rng = np.random.default_rng(0)
    texture = (rng.random((32, 200)) * 255).astype(np.uint8)
    texture = np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)   # smoother, trackable
    # The camera pans: the scene moves 2 px per frame to the right.
    clip = np.stack([np.roll(texture, 2 * t, axis=1)[:32, :32] for t in range(90)])
    clip = np.repeat(clip[..., None], 3, axis=-1)
    event = next(e for e in A.inject(clip, CONTEXT, seed=0).events if e["kind"] == "object")
    assert event["dominant_motion"][0] > 1.0
    xs = [x for x, _ in event["path"]]
    assert xs[-1] < xs[0] and event["direction"][0] < -0.9


def test_a_clip_too_short_is_one_sentence():
    with pytest.raises(VidgenError, match="too short for the three injections"):
        A.inject(indexed_clip(A.frames_needed(CONTEXT) - 1), CONTEXT)
