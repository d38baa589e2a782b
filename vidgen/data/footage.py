"""Footage: video files and folders of frame images."""

from __future__ import annotations

import logging
import os

from vidgen.data import frame_folders
from vidgen.data import frames as framelib
from vidgen.data.file_source import FileSource

log = logging.getLogger(__name__)


class VideoFiles(FileSource):
    """Video files (mp4, avi, mov, mkv, webm) decoded with OpenCV, ffmpeg as fallback."""

    kind = "video_files"
    footage = True
    has_rate = True
    noun = "video"

    def probe(self, item):
        info = framelib.probe_video(item)
        return info.frames, info.fps, (info.width, info.height)

    def load(self, item, size_of):
        c = self.cfg
        return framelib.decode_video(item, c.frame_stride, c.max_frames, fps=c.fps,
                                     size_of=size_of)


class FrameFolders(FileSource):
    """Folders of frame images, one folder per clip, frames in natural sort order."""

    kind = "frame_folders"
    footage = True
    noun = "frame folder"

    def probe(self, item):
        images, ignored = frame_folders.frame_folder_names(item)
        for name in ignored:
            log.warning("Ignoring %s in frame folder %s: not a png/jpg/bmp image.", name, item)
        first = frame_folders.read_image(os.path.join(item, images[0]))
        return len(images), 0.0, (first.shape[1], first.shape[0])

    def load(self, item, size_of):
        images, _ = frame_folders.frame_folder_names(item)
        indices = framelib.frame_indices(len(images), float(self.cfg.frame_stride), 0,
                                         self.cfg.max_frames)
        return frame_folders.decode_frame_folder(item, images, indices, size_of)
