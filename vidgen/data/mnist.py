"""Moving MNIST: generated from an MNIST file, or read from a Moving MNIST `.npy`."""

from __future__ import annotations

import gzip
import os
import zipfile

import numpy as np

from vidgen.config import DataConfig
from vidgen.data import frames as framelib
from vidgen.data import synthetic
from vidgen.data.file_source import FileSource
from vidgen.data.generated import GeneratedSource
from vidgen.errors import DataError


def load_mnist_digits(path: str) -> dict[str, np.ndarray]:
    """Loads MNIST digit images from an idx file (optionally .gz) or a keras `mnist.npz`.

    Returns:
        {"train": uint8 (N, 28, 28)} plus {"test": ...} when the file has a test set.
    """
    if not os.path.isfile(path):
        raise DataError(f"MNIST file {path!r} does not exist.")
    if path.endswith(".npz"):
        try:
            with np.load(path) as data:
                keys = set(data.files)
                if "x_train" not in keys:
                    raise DataError(
                        f"MNIST file {path!r} should hold arrays x_train (and x_test) like "
                        f"keras' mnist.npz. Received arrays: {sorted(keys)}")
                out = {"train": np.asarray(data["x_train"])}
                if "x_test" in keys:
                    out["test"] = np.asarray(data["x_test"])
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"MNIST file {path!r} is not a readable .npz archive: {e}") from None
    else:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                raw = f.read()
        except (OSError, EOFError) as e:
            raise DataError(f"MNIST file {path!r} could not be read: {e}") from None
        out = {"train": _parse_idx_images(raw, path)}
    for name, images in out.items():
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"MNIST file {path!r}: expected {name} images as uint8 (N, height, width). "
                f"Received {images.dtype} {images.shape}")
    return out


def _parse_idx_images(raw: bytes, path: str) -> np.ndarray:
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != 2051 or len(raw) < 16:
        raise DataError(
            f"MNIST file {path!r} is not an idx image file: expected magic number 2051 "
            f"(idx3, uint8), received {magic}.")
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    expected = 16 + n * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"MNIST file {path!r} is truncated or padded: its header promises {n} images of "
            f"{rows}x{cols} ({expected} bytes), the file has {len(raw)} bytes.")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


class MovingMNIST(GeneratedSource):
    """Moving MNIST generated from a user-supplied MNIST file, the standard protocol.

    Digits of the test split come from MNIST's test images when the file has
    them (keras `mnist.npz`); otherwise the images are divided between the
    splits. Validation digits are a held-out part of the training images.

    Reference:
        Srivastava et al., "Unsupervised Learning of Video Representations
        using LSTMs", ICML 2015.
    """

    kind = "moving_mnist_generated"

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        digits = load_mnist_digits(cfg.source)
        train = digits["train"]
        n = len(train)
        if "test" in digits:
            n_val = max(1, int(round(n * cfg.val_fraction)))
            self.pools = {"train": train[:n - n_val], "val": train[n - n_val:],
                          "test": digits["test"]}
        else:
            n_test = max(1, int(round(n * cfg.test_fraction)))
            n_val = max(1, int(round(n * cfg.val_fraction)))
            self.pools = {"train": train[:n - n_val - n_test],
                          "val": train[n - n_val - n_test:n - n_test],
                          "test": train[n - n_test:]}
        for pool in self.pools.values():
            if len(pool) == 0:
                raise DataError(
                    f"MNIST file {cfg.source!r} has too few images ({n}) to give every "
                    "split at least one digit.")

    def make(self, split, index):
        c = self.cfg
        rng = synthetic.clip_rng(c.seed, split, index)
        pool = self.pools[split]
        count = int(rng.integers(c.min_digits, c.max_digits + 1))
        glyph = max(4, int(round(pool.shape[1] * c.frame_size / synthetic.CANVAS_SIZE)))
        glyphs = []
        for _ in range(count):
            image = pool[rng.integers(len(pool))]
            if image.shape[0] != glyph:
                image = framelib.conform(image[None, :, :, None], glyph, 1)[0, :, :, 0]
            glyphs.append(image)
        return synthetic.moving_glyphs_clip(rng, glyphs, c.stored_length, c.frame_size)

    def describe(self):
        return {**super().describe(), "digits": {k: len(v) for k, v in self.pools.items()}}


class MovingMNISTNpy(FileSource):
    """The standard Moving MNIST file `mnist_test_seq.npy`: uint8 (20, N, 64, 64).

    Also accepts vidgen's own layout, uint8 (N, T, H, W, C). Each sequence is
    one source for the split; its windows do not overlap unless
    data.window_stride says so.
    """

    kind = "moving_mnist_npy"
    noun = "sequence"

    def __init__(self, cfg: DataConfig):
        path = cfg.source
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"Moving MNIST file {path!r} is not a readable .npy file: {e}") \
                from None
        if array.dtype != np.uint8 or array.ndim not in (4, 5) or (
                array.ndim == 5 and array.shape[-1] not in (1, 3)):
            raise DataError(
                f"Moving MNIST file {path!r}: expected uint8 shaped (time, sequences, height, "
                "width) like mnist_test_seq.npy, or (sequences, time, height, width, channels). "
                f"Received {array.dtype} {array.shape}")
        # Store as (N, T, H, W, C) without copying the memory map.
        self.array = array.transpose(1, 0, 2, 3)[..., None] if array.ndim == 4 else array
        super().__init__(cfg, [f"seq{i:06d}" for i in range(self.array.shape[0])])

    def own_channels(self, cfg):
        return int(self.array.shape[-1])

    def probe(self, item):
        return int(self.array.shape[1]), 0.0, None

    def load(self, item, size_of):
        indices = framelib.frame_indices(self.array.shape[1], float(self.cfg.frame_stride), 0,
                                         self.cfg.max_frames)
        return np.asarray(self.array[int(item[3:])][indices])
