"""Synthetic clips made with no download: moving digits and moving shapes.

Digits are rendered with OpenCV's Hershey fonts at a random font, scale,
stroke thickness and slant, so no two clips share a glyph exactly and the
embedded default data needs nothing from the network. Motion follows the
Moving MNIST protocol (Srivastava et al. 2015): each object starts at a
random position with a random direction and bounces off the canvas walls.

Every clip is a pure function of (seed, split, index), so a split is the same
on every machine and the training stream can be sharded across workers
without coordination.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

# The glyph box of Moving MNIST: 28x28 digits on a 64x64 canvas.
GLYPH_SIZE = 28
CANVAS_SIZE = 64
# Per-frame step as a fraction of the free range, as in Srivastava's generator.
STEP_LENGTH = 0.1

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
)
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of clip `index` of `split`, independent of any other clip."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}. Received: {split!r}")
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


def render_digit(rng: np.random.Generator, digit: int, size: int = GLYPH_SIZE) -> np.ndarray:
    """Renders a handwriting-like digit glyph.

    Args:
        rng: source of the font, scale, thickness and slant.
        digit: 0..9.
        size: side of the square glyph box; the digit fills about 20/28 of
            it, as MNIST digits do.

    Returns:
        uint8 array (size, size), white digit on black.
    """
    font = _FONTS[rng.integers(len(_FONTS))]
    thickness = int(rng.integers(2, 6))
    big = 96
    canvas = np.zeros((big, big), np.uint8)
    scale = 2.0
    (w, h), _ = cv2.getTextSize(str(digit), font, scale, thickness)
    cv2.putText(canvas, str(digit), ((big - w) // 2, (big + h) // 2), font, scale,
                255, thickness, cv2.LINE_AA)
    # Slant and a little rotation make the fonts look handwritten.
    shear = rng.uniform(-0.35, 0.35)
    angle = rng.uniform(-12, 12)
    rot = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    rot[0, 1] += shear
    rot[0, 2] -= shear * big / 2
    canvas = cv2.warpAffine(canvas, rot, (big, big), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(canvas > 32)
    canvas = canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    # Fit the longer side into a random share of the box, keeping the aspect.
    inner = size * rng.uniform(0.6, 0.78)
    factor = inner / max(canvas.shape)
    h = max(1, int(round(canvas.shape[0] * factor)))
    w = max(1, int(round(canvas.shape[1] * factor)))
    glyph = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = glyph
    return out


def bouncing_trajectories(rng: np.random.Generator, num_frames: int, num_objects: int,
                          free_range: float, step_length: float = STEP_LENGTH) -> np.ndarray:
    """Top-left positions of objects moving at constant speed and bouncing off walls.

    Args:
        rng: source of start positions and directions.
        num_frames: clip length.
        num_objects: objects moving independently.
        free_range: positions lie in [0, free_range] pixels (canvas minus object).
        step_length: distance per frame as a fraction of `free_range`.

    Returns:
        int array (num_frames, num_objects, 2) of (row, column) positions.
    """
    out = np.zeros((num_frames, num_objects, 2), np.int32)
    for k in range(num_objects):
        pos = rng.uniform(0.0, 1.0, size=2)
        theta = rng.uniform(0.0, 2.0 * np.pi)
        vel = np.array([np.sin(theta), np.cos(theta)])
        for t in range(num_frames):
            out[t, k] = np.round(pos * free_range).astype(np.int32)
            pos = pos + vel * step_length
            for axis in range(2):
                if pos[axis] <= 0.0:
                    pos[axis], vel[axis] = -pos[axis], -vel[axis]
                elif pos[axis] >= 1.0:
                    pos[axis], vel[axis] = 2.0 - pos[axis], -vel[axis]
    return out


def compose(glyphs: list[np.ndarray], trajectories: np.ndarray, canvas: int) -> np.ndarray:
    """Pastes moving glyphs onto a black canvas, overlaps combined by maximum.

    Args:
        glyphs: per object, uint8 (h, w) or (h, w, c).
        trajectories: (T, objects, 2) top-left positions.
        canvas: side of the square canvas.

    Returns:
        uint8 clip (T, canvas, canvas, c).
    """
    channels = glyphs[0].shape[2] if glyphs[0].ndim == 3 else 1
    frames = np.zeros((trajectories.shape[0], canvas, canvas, channels), np.uint8)
    for k, glyph in enumerate(glyphs):
        glyph = glyph.reshape(glyph.shape[0], glyph.shape[1], channels)
        h, w = glyph.shape[:2]
        for t in range(trajectories.shape[0]):
            r, c = trajectories[t, k]
            region = frames[t, r:r + h, c:c + w]
            np.maximum(region, glyph, out=region)
    return frames


def moving_glyphs_clip(rng: np.random.Generator, glyphs: list[np.ndarray], num_frames: int,
                       canvas: int) -> np.ndarray:
    """A clip of the given glyphs bouncing on a canvas (the Moving MNIST dynamics)."""
    free = canvas - max(max(g.shape[:2]) for g in glyphs)
    traj = bouncing_trajectories(rng, num_frames, len(glyphs), float(free))
    return compose(glyphs, traj, canvas)


def digits_clip(seed: int, split: str, index: int, num_frames: int, frame_size: int,
                min_digits: int, max_digits: int) -> np.ndarray:
    """Clip `index` of the synthetic moving-digits `split`: uint8 (T, S, S, 1)."""
    rng = clip_rng(seed, split, index)
    count = int(rng.integers(min_digits, max_digits + 1))
    glyph_size = max(4, int(round(GLYPH_SIZE * frame_size / CANVAS_SIZE)))
    glyphs = [render_digit(rng, int(rng.integers(10)), glyph_size) for _ in range(count)]
    return moving_glyphs_clip(rng, glyphs, num_frames, frame_size)


def _shape_glyph(rng: np.random.Generator, size: int, color: bool) -> np.ndarray:
    kind = int(rng.integers(3))
    side = int(rng.integers(max(3, size // 2), size + 1))
    channels = 3 if color else 1
    glyph = np.zeros((side, side, channels), np.uint8)
    if color:
        # Saturated colours: one channel high, the others random.
        value = rng.integers(40, 256, size=3)
        value[rng.integers(3)] = 255
        paint = tuple(int(v) for v in value)
    else:
        paint = (int(rng.integers(128, 256)),)
    if kind == 0:
        cv2.circle(glyph, (side // 2, side // 2), side // 2 - 1, paint, -1, cv2.LINE_AA)
    elif kind == 1:
        cv2.rectangle(glyph, (1, 1), (side - 2, side - 2), paint, -1)
    else:
        pts = np.array([[side // 2, 1], [1, side - 2], [side - 2, side - 2]], np.int32)
        cv2.fillPoly(glyph, [pts], paint, cv2.LINE_AA)
    return glyph


def shapes_clip(seed: int, split: str, index: int, num_frames: int, frame_size: int,
                min_objects: int, max_objects: int, color: bool) -> np.ndarray:
    """Clip `index` of the synthetic moving-shapes `split`: uint8 (T, S, S, 3 or 1)."""
    rng = clip_rng(seed, split, index)
    count = int(rng.integers(min_objects, max_objects + 1))
    size = max(4, frame_size // 3)
    glyphs = [_shape_glyph(rng, size, color) for _ in range(count)]
    return moving_glyphs_clip(rng, glyphs, num_frames, frame_size)


def stable_hash(text: str) -> int:
    """A hash of `text` that is the same in every process (unlike `hash`)."""
    return zlib.crc32(text.encode("utf-8"))
