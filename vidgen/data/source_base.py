"""The clip and the interface of every clip source.

A source knows its splits and yields uint8 clips shaped (time, height, width,
channels) for each; `vidgen.data.sources.open_source` picks the source that a
path or a built-in name calls for.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from vidgen.config import DataConfig
from vidgen.errors import DataError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: an id naming where it came from, and uint8 frames (T, H, W, C).

    `source` names the file or sequence it was cut from (empty: the clip is its
    own source).
    """

    id: str
    frames: np.ndarray
    source: str = ""


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}. Received: {split!r}")


class Source(abc.ABC):
    """A supply of clips for the train, val and test splits."""

    kind: str = "source"

    def __init__(self, cfg: DataConfig):
        # data.channels=0 (auto) becomes the source's own channel count here.
        self.cfg = cfg if cfg.channels else dataclasses.replace(
            cfg, channels=self.own_channels(cfg))
        self.skipped: list[dict[str, str]] = []

    def own_channels(self, cfg: DataConfig) -> int:
        """The channels of this source's clips, used when data.channels is 0 (auto)."""
        return 1

    def stored_size(self, split: str) -> int:
        """Side of the square frames this source yields for `split`."""
        return self.cfg.frame_size

    def all_clips(self) -> Iterator[tuple[str, Clip]]:
        """Every clip `prepare` writes, as (split, clip) pairs."""
        for split in SPLITS:
            for clip in self.clips(split):
                yield split, clip

    def planned_clips(self) -> Optional[int]:
        """How many clips `all_clips` yields, when known in advance."""
        return None

    @property
    def endless_train(self) -> bool:
        """True when the training split can be drawn from forever."""
        return False

    @abc.abstractmethod
    def clips(self, split: str, num_shards: int = 1, shard_index: int = 0,
              limit: Optional[int] = None) -> Iterator[Clip]:
        """Yields the clips of `split` (every `num_shards`-th, from `shard_index`).

        Args:
            split: "train", "val" or "test".
            num_shards, shard_index: this reader's share of the clips.
            limit: at most this many clips of an endless split; `None` reads
                an endless training split forever.
        """

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this source."""
        return {"kind": self.kind, "source": self.cfg.source}
