"""Writing files so that a reader never finds half of one."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json_atomic(path: str | os.PathLike, value: Any, sort_keys: bool = False) -> None:
    """Writes `value` as indented JSON to a temporary file, then renames it to `path`."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=sort_keys)
        f.write("\n")
    os.replace(tmp, path)


def write_bytes_atomic(path: str | os.PathLike, content: bytes) -> str:
    """Writes `content` to a temporary file beside `path` (folders created), then renames it."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
