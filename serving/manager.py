"""Version directories of one model: polled, loaded fully and warmed, then swapped in.

TF Serving's default version policy: the highest version is served. A
version directory is loaded only when it looks finished, meaning it holds
`saved_model.pb` and its listing (paths, sizes, modification times) is
unchanged across one poll interval; then it is loaded and every warm-up
record replayed before it replaces the old version. If any step fails, the
old version keeps serving and the failure is reported in the model status;
the directory is tried again when its files change. Requests hold a
reference to the version they started on, so a swap never interrupts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Optional

import grpc

from serving.errors import ServingError, invalid, not_found
from serving.servable import Servable

log = logging.getLogger("vidgen.serving")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


def snapshot(path: str) -> tuple:
    """(relative path, size, mtime_ns) of every file under `path`, sorted."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            out.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


class VersionState:
    def __init__(self, state: str, error: Optional[ServingError] = None):
        self.state = state
        self.error = error
        self.since = time.monotonic()   # when the version entered this state


class ModelManager:
    """Serves the latest good version of `base_path` (= BASE/NAME).

    Args:
        name: the model name requests must use.
        base_path: the directory holding numeric version directories.
        limits: the server's `Limits` (passed to every Servable).
        poll_interval: seconds between scans of `base_path`.
        warmup: callable(servable) replaying its warm-up records; raises on failure.
    """

    def __init__(self, name: str, base_path: str, limits, poll_interval: float = 1.0,
                 warmup: Optional[Callable[[Servable], None]] = None):
        self.name = name
        self.base_path = base_path
        self.limits = limits
        self.poll_interval = poll_interval
        self.warmup = warmup
        self._current: Optional[Servable] = None
        self._states: dict[int, VersionState] = {}
        self._seen: dict[int, tuple] = {}      # version -> snapshot at the last poll
        self._failed: dict[int, tuple] = {}    # version -> snapshot that failed to load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.loaded = threading.Event()

    @property
    def served_version(self) -> Optional[int]:
        """The version requests without a version go to (None before the first load)."""
        current = self._current
        return None if current is None else current.version

    def version_state(self, version: int) -> Optional[VersionState]:
        """The state of `version` (None if it was never seen)."""
        with self._lock:
            return self._states.get(version)

    # ---- requests -----------------------------------------------------------------

    def handle(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> Servable:
        """The servable a request names, with TF Serving's NOT_FOUND messages."""
        if label:
            raise invalid(f"Unrecognized servable version label: {label}")
        current = self._current
        if name != self.name or current is None:
            if version is not None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            raise not_found(f"Servable not found for request: Latest({name})")
        if version is not None and version != current.version:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return current

    def status(self, name: str, version: Optional[int] = None) -> list[tuple[int, VersionState]]:
        """(version, state) pairs, with TF Serving's GetModelStatus messages when unknown."""
        with self._lock:
            states = dict(self._states)
        if name != self.name or not states:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {name}")
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        return sorted(states.items())

    # ---- polling ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad scan
                log.exception("Polling %s failed", self.base_path)
            self._stop.wait(self.poll_interval)

    def _versions(self) -> dict[int, str]:
        try:
            names = os.listdir(self.base_path)
        except FileNotFoundError:
            return {}
        return {int(n): os.path.join(self.base_path, n) for n in names
                if n.isdigit() and os.path.isdir(os.path.join(self.base_path, n))}

    def poll_once(self) -> None:
        """One scan: note snapshots, and load the highest version that is stable and new."""
        versions = self._versions()
        stable = []
        for v, path in versions.items():
            snap = snapshot(path)
            prev = self._seen.get(v)
            self._seen[v] = snap
            has_graph = any(f[0] in ("saved_model.pb", "saved_model.pbtxt") for f in snap)
            if snap and snap == prev and has_graph and self._failed.get(v) != snap:
                stable.append(v)
        for v in list(self._seen):
            if v not in versions:
                del self._seen[v]
                self._failed.pop(v, None)
        current = self._current
        if current is not None and current.version not in versions:
            # The served directory was removed: TF Serving unloads it.
            log.info("Version %d of %s was removed; unloading it.", current.version, self.name)
            with self._lock:
                self._current = None
                self._states[current.version] = VersionState(END)
            current = None
        candidates = [v for v in stable if current is None or v > current.version]
        if candidates:
            self._load(max(candidates), versions[max(candidates)])

    def _load(self, version: int, path: str) -> None:
        with self._lock:
            self._states[version] = VersionState(LOADING)
        started = time.monotonic()
        try:
            servable = Servable(self.name, version, path, self.limits)
            if self.warmup is not None:
                self.warmup(servable)
        except Exception as e:  # noqa: BLE001 - any failure leaves the old version serving
            error = e if isinstance(e, ServingError) else ServingError(
                grpc.StatusCode.UNKNOWN, f"Loading version {version} from {path} failed: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            log.warning("Version %d of %s did not load; %s. %s", version, self.name,
                        error.message, f"Still serving version {self._current.version}."
                        if self._current else "No version is served.")
            self._failed[version] = self._seen.get(version)
            with self._lock:
                self._states[version] = VersionState(END, error)
            return
        with self._lock:
            old, self._current = self._current, servable
            self._states[version] = VersionState(AVAILABLE)
            if old is not None:
                # Requests already holding `old` finish on it; Python frees it after them.
                self._states[old.version] = VersionState(END)
        self.loaded.set()
        log.info("Serving version %d of %s (loaded and warmed in %.2f s).", version, self.name,
                 time.monotonic() - started)
