"""The models a server serves: one ModelManager per config entry, their version labels, reloads.

`reload` is TF Serving's ServerCore::ReloadConfig: the new ModelServerConfig
replaces the old one. Models that are new get a manager (and `reload` waits
for them to serve), models that stay get the new version policy, models that
are gone stop serving (a model whose base_path changes counts as gone and
new). The checks come first, so a config that fails them changes nothing:
TF Serving's own checks (serving/model_config.py) and its rule for labels
(server_core.cc UpdateModelVersionLabelMap): a label may only name a version
that is AVAILABLE now; with `allow_version_labels_for_unavailable_models` a
label that is new, or that keeps its version, may name one that is not.
(So, by default, a config with labels cannot start a server, exactly as in
TF Serving: nothing is loaded yet when it is first read.)

`watch` re-reads the config file every few seconds
(`--model_config_file_poll_wait_seconds`); a file that cannot be read,
parsed or applied leaves the running config as it is and is logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Optional

import grpc

from serving import model_config
from serving.errors import ConfigFileError, ServingError, invalid, not_found
from serving.manager import END, ModelManager, VersionState
from serving.servable import Servable

log = logging.getLogger("vidgen.serving")


class ModelRegistry:
    """The configured models and their labels.

    Args:
        config: a ModelServerConfig (model_config_list).
        limits: the server's `Limits`.
        poll_interval: seconds between version scans of each model.
        warmup: callable(servable) -> records replayed, for every load.
        metrics: a `serving.monitoring.Metrics`, or None.
        allow_version_labels_for_unavailable_models: TF Serving's flag of that name.
    """

    def __init__(self, config, limits, poll_interval: float = 1.0,
                 warmup: Optional[Callable[[Servable], int]] = None, metrics=None,
                 allow_version_labels_for_unavailable_models: bool = False):
        self.limits = limits
        self.poll_interval = poll_interval
        self.warmup = warmup
        self.metrics = metrics
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._managers: dict[str, ModelManager] = {}   # replaced, never mutated
        self._labels: dict[str, dict[str, int]] = {}
        self._config = model_config.ModelServerConfig()
        self._reload_lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()
        self._watcher: Optional[threading.Thread] = None
        self.config_reads = 0   # completed re-reads of the config file (see `watch`)
        self.reload(config, wait=False)

    @property
    def config(self):
        """A copy of the config in force."""
        out = model_config.ModelServerConfig()
        out.CopyFrom(self._config)
        return out

    @property
    def names(self) -> list[str]:
        return list(self._managers)

    def manager(self, name: str) -> ModelManager:
        return self._managers[name]

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    # ---- config -------------------------------------------------------------------

    def reload(self, config, wait: bool = True, timeout: Optional[float] = None) -> None:
        """Replaces the config; raises ServingError (and keeps the old one) if it is refused.

        Args:
            config: the new ModelServerConfig.
            wait: once started, block until every newly added model serves a version, or
                fails to.
            timeout: seconds the wait may take (None: no limit).
        """
        new_config = model_config.ModelServerConfig()
        new_config.CopyFrom(config)
        with self._reload_lock:
            model_config.validate(new_config)
            if new_config == self._config:
                return
            labels = self._check_labels(new_config)
            managers, added = {}, []
            for entry in new_config.model_config_list.config:
                current = self._managers.get(entry.name)
                if current is not None and current.base_path == entry.base_path:
                    current.set_policy(entry.model_version_policy)
                    managers[entry.name] = current
                else:
                    managers[entry.name] = ModelManager(
                        entry.name, entry.base_path, self.limits, self.poll_interval,
                        self.warmup, policy=entry.model_version_policy, metrics=self.metrics)
                    added.append(managers[entry.name])
            removed = [m for n, m in self._managers.items() if managers.get(n) is not m]
            self._managers, self._labels, self._config = managers, labels, new_config
            for m in removed:
                log.info("Model %s left the config; it is no longer served.", m.name)
                m.stop(unload=True)
            if self._started:
                for m in added:
                    m.start()
        if wait and added and self._started:
            self._await(added, timeout)

    def _check_labels(self, config) -> dict[str, dict[str, int]]:
        labels: dict[str, dict[str, int]] = {}
        for entry in config.model_config_list.config:
            manager = self._managers.get(entry.name)
            for label, version in sorted(entry.version_labels.items()):
                previous = self._labels.get(entry.name, {}).get(label)
                allowed = self.allow_unavailable_labels and previous in (None, version)
                if not allowed and (manager is None or not manager.is_available(version)):
                    raise model_config.unavailable_label(entry.name, version)
                labels.setdefault(entry.name, {})[label] = version
        return labels

    def _await(self, managers: list[ModelManager], timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(managers)
        while pending and not self._stop.is_set():
            pending = [m for m in pending if not m.loaded.is_set() and not _failures(m)]
            if deadline is not None and time.monotonic() >= deadline:
                break
            if pending:
                self._stop.wait(0.05)
        failed = [(m, v, s) for m in managers if not m.loaded.is_set()
                  for v, s in _failures(m)]
        if failed:
            raise ServingError(grpc.StatusCode.UNKNOWN, f"{len({m.name for m, _, _ in failed})}"
                               " model(s) did not become available: {" + "".join(
                                   f"{{{{name: {m.name} version: {v}}} due to error: "
                                   f"{s.error.code.name}: {s.error.message}}}, "
                                   for m, v, s in failed) + "}")
        if pending:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "Deadline Exceeded while waiting for model(s) "
                               f"{', '.join(m.name for m in pending)} to load")

    def watch(self, path: str, interval: float) -> None:
        """Re-reads the config file at `path` every `interval` seconds and applies it."""
        self._watcher = threading.Thread(target=self._watch, args=(path, interval),
                                         name="model-config-poller", daemon=True)
        self._watcher.start()

    def _watch(self, path: str, interval: float) -> None:
        reported = None
        while not self._stop.wait(interval):
            try:
                self.reload(model_config.read_model_config(path), wait=False)
                reported = None
            except (ConfigFileError, ServingError) as e:
                problem = e.message if isinstance(e, ServingError) else str(e)
                problem = problem.removeprefix(f"{path}: ")
                if problem != reported:   # once per problem, not once per poll
                    log.error("The model config %s was not applied (%s); the previous config "
                              "stays in force.", path, problem)
                    reported = problem
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad read
                log.exception("Re-reading the model config %s failed", path)
            self.config_reads += 1

    # ---- serving ------------------------------------------------------------------

    def start(self) -> None:
        with self._reload_lock:
            self._started = True
            for m in self._managers.values():
                m.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._reload_lock:
            self._started = False   # a reload still running (an RPC past the drain) starts nothing
            for m in self._managers.values():
                m.stop()

    def wait_until_available(self, timeout: Optional[float] = None,
                             interrupt: Optional[threading.Event] = None) -> bool:
        """True once every configured model serves a version (TF Serving's start-up wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = [m for m in self._managers.values() if not m.loaded.is_set()]
            if not pending:
                return True
            if interrupt is not None and interrupt.is_set():
                return False
            remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if remaining <= 0:
                return False
            pending[0].loaded.wait(remaining)

    def resolve(self, name: str, version: Optional[int] = None,
                label: Optional[str] = None) -> Servable:
        """The servable a request names: by version, by label, or the highest serving."""
        if label is not None:
            version = self._labels.get(name, {}).get(label)
            if version is None:
                raise invalid(f"Unrecognized servable version label: {label}")
        manager = self._managers.get(name)
        if manager is None:
            if version is not None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            raise not_found(f"Servable not found for request: Latest({name})")
        return manager.handle(version)

    def status(self, name: str, version: Optional[int] = None) -> list[tuple[int, VersionState]]:
        manager = self._managers.get(name)
        if manager is None:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {name}")
            raise not_found(f"Could not find any versions of model {name}")
        return manager.status(version)


def _failures(manager: ModelManager) -> list[tuple[int, VersionState]]:
    try:
        states = manager.status()
    except ServingError:
        return []
    return [(v, s) for v, s in states if s.state == END and s.error is not None]
