"""Version directories of one model: polled, loaded fully and warmed, then swapped in.

Which versions serve is the model's version policy (`latest {num_versions}`
by default, `all`, or `specific {versions}`; see serving/model_config.py),
applied to the version directories that could be loaded. A directory can
be loaded when it looks finished: it holds `saved_model.pb` and its listing
(paths, sizes, modification times) is unchanged across one poll interval.
Loading means reading the SavedModel and replaying every warm-up record;
only then does the version take requests.

Versions come and go by TF Serving's AvailabilityPreservingPolicy
(core/availability_preserving_policy.cc): a version the policy no longer
wants is unloaded only once a wanted version serves, or when no version is
wanted at all. So when the serving version's directory is removed, the next
version is loaded and warmed before the old one stops taking requests. A
version that fails to load is reported in the model status and not retried
until its files change; the versions already serving keep serving. Requests
hold a reference to the version they started on, so an unload never
interrupts them.

A version directory is named by its number: 1 to 18 ASCII digits without a
leading zero ("0" itself is fine), so every number has exactly one folder
and fits TF Serving's int64 versions. Any other folder ("01", Arabic-Indic
"١", thousands of digits, "v2") is ignored with one warning per name; hidden
folders (the exporter's ".tmp-*") are ignored silently. TF Serving itself
parses names with `strings::safe_strto64` (file_system_storage_path_source.cc),
which also takes "01", " 1" and "+1" and, when two names give the same
number, loads one and warns that the other is ignored; here "01" never
competes with "1". A scan that fails is logged once per distinct error and
polling goes on; a filesystem error (the base path missing or unreadable) is
one warning line, and, as in TF Serving (file_system_storage_path_source.cc
logs "Could not find base path" and sends no new versions), the versions
already loaded keep serving.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Optional

import grpc
from tensorflow_serving.config.file_system_storage_path_source_pb2 import (
    FileSystemStoragePathSourceConfig,
)

from serving import model_config
from serving.errors import ServingError, not_found
from serving.servable import Servable

log = logging.getLogger("vidgen.serving")

# TF Serving's default policy: the highest version.
_LATEST = FileSystemStoragePathSourceConfig.ServableVersionPolicy()

# The names of version directories: the number's canonical ASCII spelling, at most 18 digits.
VERSION_NAME = re.compile(r"0|[1-9][0-9]{0,17}")

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
    """Serves the versions of `base_path` (= BASE/NAME) that its version policy names.

    Args:
        name: the model name requests must use.
        base_path: the directory holding numeric version directories.
        limits: the server's `Limits` (passed to every Servable).
        poll_interval: seconds between scans of `base_path`.
        warmup: callable(servable) replaying its warm-up records and returning how many
            it replayed; raises on failure.
        policy: a ServableVersionPolicy proto (None: latest 1, TF Serving's default).
        metrics: a `serving.monitoring.Metrics` for load and warm-up times, or None.
    """

    def __init__(self, name: str, base_path: str, limits, poll_interval: float = 1.0,
                 warmup: Optional[Callable[[Servable], int]] = None, policy=None,
                 metrics=None):
        self.name = name
        self.base_path = base_path
        self.limits = limits
        self.poll_interval = poll_interval
        self.warmup = warmup
        self.metrics = metrics
        self._policy = policy
        self._servables: dict[int, Servable] = {}   # replaced, never mutated: read lock-free
        self._states: dict[int, VersionState] = {}
        self._seen: dict[int, tuple] = {}      # version -> snapshot at the last poll
        self._failed: dict[int, tuple] = {}    # version -> snapshot that failed to load
        self._ignored: set[str] = set()        # folder names already warned about
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.loaded = threading.Event()        # set once a first version serves

    @property
    def served_version(self) -> Optional[int]:
        """The version requests without a version go to (None while none serves)."""
        servables = self._servables
        return max(servables) if servables else None

    @property
    def available_versions(self) -> list[int]:
        return sorted(self._servables)

    def is_available(self, version: int) -> bool:
        return version in self._servables

    def version_state(self, version: int) -> Optional[VersionState]:
        """The state of `version` (None if it was never seen)."""
        with self._lock:
            return self._states.get(version)

    def set_policy(self, policy) -> None:
        """Applies a new version policy at the next scan, which starts at once."""
        self._policy = policy
        self._wake.set()

    # ---- requests -----------------------------------------------------------------

    def handle(self, version: Optional[int] = None) -> Servable:
        """The highest serving version, or `version`, with TF Serving's NOT_FOUND messages."""
        servables = self._servables
        if version is None:
            if not servables:
                raise not_found(f"Servable not found for request: Latest({self.name})")
            return servables[max(servables)]
        if version not in servables:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return servables[version]

    def status(self, version: Optional[int] = None) -> list[tuple[int, VersionState]]:
        """(version, state) pairs, with TF Serving's GetModelStatus messages when unknown."""
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {self.name}")
            return [(version, states[version])]
        if not states:
            raise not_found(f"Could not find any versions of model {self.name}")
        return sorted(states.items())

    # ---- polling ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"versions-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, unload: bool = False) -> None:
        """Stops polling; `unload` also stops serving every version (model removed)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if unload:
            with self._lock:
                for v in self._servables:
                    self._states[v] = VersionState(END)
                self._servables = {}

    def _loop(self) -> None:
        reported = None
        while not self._stop.is_set():
            self._wake.clear()   # a policy change during the scan wakes the next one
            try:
                self.poll_once()
                reported = None
            except Exception as e:  # noqa: BLE001 - the poller must outlive any one bad scan
                problem = f"{type(e).__name__}: {e}"
                if problem != reported:   # once per problem, not once per poll
                    if isinstance(e, OSError):   # the filesystem, not a bug: no traceback
                        serving = self.available_versions
                        log.warning("Could not scan %s (%s: %s); polling goes on. %s",
                                    self.base_path, type(e).__name__, e.strerror or e,
                                    f"Still serving versions {serving}." if serving
                                    else "No version is served.")
                    else:
                        log.exception("Polling %s failed; polling goes on", self.base_path)
                    reported = problem
            self._wake.wait(self.poll_interval)

    def _versions(self) -> dict[int, str]:
        # A missing base path raises (the scan changes nothing) rather than listing no
        # versions, which would unload every version that serves.
        names = os.listdir(self.base_path)
        versions = {}
        for name in names:
            path = os.path.join(self.base_path, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            if VERSION_NAME.fullmatch(name):
                versions[int(name)] = path
            elif name not in self._ignored:
                self._ignored.add(name)
                shown = ascii(name) if len(name) <= 40 else \
                    f"{ascii(name[:20])}... ({len(name)} characters)"
                log.warning("Ignoring the folder %s in %s: a version folder is named by 1 to "
                            "18 ASCII digits without a leading zero (e.g. '1').", shown,
                            self.base_path)
        self._ignored &= set(names)   # a name that comes back is reported again
        return versions

    def poll_once(self) -> None:
        """One scan: the policy's versions are loaded, then the others unloaded if allowed."""
        with self._poll_lock:
            self._poll()

    def _poll(self) -> None:
        versions = self._versions()
        loadable = set(self._servables) & set(versions)
        for v, path in versions.items():
            snap = snapshot(path)
            prev = self._seen.get(v)
            self._seen[v] = snap
            has_graph = any(f[0] in ("saved_model.pb", "saved_model.pbtxt") for f in snap)
            if snap and snap == prev and has_graph:
                loadable.add(v)
        for v in list(self._seen):
            if v not in versions:
                del self._seen[v]
                self._failed.pop(v, None)
        # A version that failed stays wanted (so what serves is kept, as TF Serving keeps
        # it for a version in error) but is not retried until its files change.
        aspired = model_config.aspired_versions(self._policy or _LATEST, loadable)
        self._unload_unwanted(aspired)
        for v in sorted(aspired - set(self._servables), reverse=True):
            if self._stop.is_set():
                return
            if self._failed.get(v) != self._seen.get(v):
                self._load(v, versions[v])
                self._unload_unwanted(aspired)

    def _unload_unwanted(self, aspired: set[int]) -> None:
        loaded = set(self._servables)
        unwanted = sorted(loaded - aspired)
        if not aspired or loaded & aspired:
            drop = unwanted
        else:
            drop = unwanted[:-1]   # keep the highest until a wanted version serves
        for v in drop:
            reason = ("its directory was removed" if v not in self._seen
                      else "the version policy no longer names it")
            log.info("Unloading version %d of %s: %s.", v, self.name, reason)
            with self._lock:
                self._servables = {k: s for k, s in self._servables.items() if k != v}
                self._states[v] = VersionState(END)

    def _load(self, version: int, path: str) -> None:
        with self._lock:
            self._states[version] = VersionState(LOADING)
        started = time.monotonic()
        try:
            servable = Servable(self.name, version, path, self.limits)
        except Exception as e:  # noqa: BLE001 - any failure leaves the old versions serving
            self._record_load(path, False, 0.0)
            self._failed_load(version, path, e)
            return
        loaded = time.monotonic()
        self._record_load(path, True, loaded - started)
        try:
            replayed = self.warmup(servable) if self.warmup is not None else 0
        except Exception as e:  # noqa: BLE001
            self._failed_load(version, path, e)
            return
        if replayed and self.metrics is not None:
            self.metrics.warmup(path, time.monotonic() - loaded)
        with self._lock:
            self._servables = {**self._servables, version: servable}
            self._states[version] = VersionState(AVAILABLE)
        self.loaded.set()
        log.info("Serving version %d of %s (loaded and warmed in %.2f s).", version, self.name,
                 time.monotonic() - started)

    def _record_load(self, path: str, ok: bool, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.load(path, ok, seconds)

    def _failed_load(self, version: int, path: str, e: Exception) -> None:
        error = e if isinstance(e, ServingError) else ServingError(
            grpc.StatusCode.UNKNOWN, f"Loading version {version} from {path} failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        serving = self.available_versions
        log.warning("Version %d of %s did not load; %s. %s", version, self.name, error.message,
                    f"Still serving versions {serving}." if serving else "No version is served.")
        self._failed[version] = self._seen.get(version)
        with self._lock:
            self._states[version] = VersionState(END, error)
