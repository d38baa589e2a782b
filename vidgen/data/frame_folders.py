"""Folders of frame images: one image per frame, in natural sort order.

`vidgen.data.frames` decodes videos and conforms frames; this module reads
the other kind of clip, a folder of png/jpg/bmp files (`FrameFolders`,
`vidgen generate --input FOLDER`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Optional

import cv2
import numpy as np

from vidgen.data.frames import IMAGE_EXTENSIONS, check_same_size, natural_key, shrink
from vidgen.errors import DataError


def read_image(path: str) -> np.ndarray:
    """Reads one image as uint8 (H, W, C), C in {1, 3}, RGB order."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(
            f"Frame {path!r} is not a readable image: expected a png/jpg/bmp file.")
    if image.dtype != np.uint8:
        image = (image / (np.iinfo(image.dtype).max / 255.0)).astype(np.uint8) \
            if np.issubdtype(image.dtype, np.integer) else np.clip(image * 255, 0, 255).astype(
                np.uint8)
    if image.ndim == 2:
        return image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frame_folder_names(folder: str) -> tuple[list[str], list[str]]:
    """(frame image names in natural sort order, names of non-image files ignored).

    Raises:
        DataError: the folder is missing or holds no images.
    """
    if not os.path.isdir(folder):
        raise DataError(f"Frame folder {folder!r} does not exist.")
    names = sorted(os.listdir(folder), key=natural_key)
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    ignored = [n for n in names if n not in images and not n.startswith(".")
               and os.path.isfile(os.path.join(folder, n))]
    if not images:
        raise DataError(
            f"Frame folder {folder!r} holds no frames: expected "
            f"{'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} files, received "
            f"{len(names)} other entries.")
    return images, ignored


def read_frame_folder(folder: str, indices: Optional[Sequence[int]] = None,
                      size: int = 0) -> tuple[np.ndarray, list[str]]:
    """Reads a folder of frame images in natural sort order.

    Args:
        folder: the clip's folder.
        indices: positions (in sorted order) of the frames to read (None: all).
        size: shrink frames whose shorter side is larger to this (0: keep).

    Returns:
        (uint8 frames (T, H, W, C), names of non-image files that were ignored).

    Raises:
        DataError: no images, an unreadable image, or frames of mixed sizes.
    """
    images, ignored = frame_folder_names(folder)
    return np.stack(decode_frame_folder(folder, images, indices, lambda j: size)), ignored


def decode_frame_folder(folder: str, images: Sequence[str],
                        indices: Optional[Sequence[int]] = None,
                        size_of: Optional[Callable[[int], Optional[int]]] = None
                        ) -> list[Optional[np.ndarray]]:
    """Frames `indices` of a folder's `images`, each shrunk to `size_of(j)` (None: skipped).

    Frames keep the folder's channels: 3 when any frame is in colour.
    """
    size_of = size_of or (lambda j: 0)
    chosen = list(images) if indices is None else [images[i] for i in indices]
    frames: list[Optional[np.ndarray]] = []
    first = None
    for j, name in enumerate(chosen):
        size = size_of(j)
        if size is None:
            frames.append(None)
            continue
        frame = read_image(os.path.join(folder, name))
        if first is None:
            first = (name, frame.shape)
        else:
            check_same_size(os.path.join(folder, name), frame, first)
        frames.append(shrink(frame, size))
    if any(f is not None and f.shape[2] == 3 for f in frames):
        frames = [np.repeat(f, 3, axis=-1) if f is not None and f.shape[2] == 1 else f
                  for f in frames]
    return frames
