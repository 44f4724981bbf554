"""Which model the daemon runs, and noticing when that changes (hot swap).

Order: ``model.path`` from the config if set; else the current version in the
model registry under ``<state_dir>/models`` (promoted by ``streamwatch trainer``,
checksum verified); else the model shipped with streamwatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from streamwatch.config import Config
from streamwatch.model.registry import ModelRegistry, RegistryError, sha256_file
from streamwatch.model.runtime import Classifier, ModelLoadError, default_model_path

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    origin: str  # "config", "registry" or "shipped"
    sha256: str | None = None  # expected checksum (registry only)


def registry_for(config: Config) -> ModelRegistry:
    return ModelRegistry(config.state_dir / "models")


def choose_model(config: Config) -> ModelChoice:
    if config.model.path is not None:
        return ModelChoice(config.model.path, "config")
    try:
        current = registry_for(config).current_path()
    except RegistryError as exc:
        log.error("model_registry_unreadable", error=str(exc))
        current = None
    if current is not None:
        return ModelChoice(current[0], "registry", current[1])
    return ModelChoice(default_model_path(), "shipped")


def load_model(config: Config, choice: ModelChoice | None = None) -> Classifier:
    """Load and verify the chosen model; raises ModelLoadError with an operator message."""
    choice = choice or choose_model(config)
    if choice.sha256 is not None and choice.path.is_file():
        actual = sha256_file(choice.path)
        if actual != choice.sha256:
            raise ModelLoadError(
                f"model file {choice.path}: checksum {actual[:12]}... does not match the registry's "
                f"{choice.sha256[:12]}... (changed or truncated; use 'streamwatch model rollback')"
            )
    return Classifier(choice.path, threads=config.model.threads, runtime=config.model.runtime)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ModelWatcher:
    """Polled by the daemon's main loop; returns a newly loaded model when the choice changed."""

    def __init__(self, config: Config, loaded: Classifier):
        self._config = config
        self._choice = choose_model(config)
        self._stamp = _stamp(self._choice.path)
        self._version = loaded.version
        self._failed: tuple | None = None

    def poll(self) -> Classifier | None:
        choice = choose_model(self._config)
        stamp = _stamp(choice.path)
        if choice == self._choice and stamp == self._stamp:
            return None
        key = (choice, stamp)
        if key == self._failed:
            return None  # already reported; wait for the next change
        try:
            classifier = load_model(self._config, choice)
        except ModelLoadError as exc:
            self._failed = key
            log.error("model_swap_rejected", path=str(choice.path), origin=choice.origin, error=str(exc),
                      keeping=self._version)
            return None
        log.info("model_swapped", old=self._version, new=classifier.version, origin=choice.origin,
                 path=str(choice.path))
        self._choice, self._stamp, self._version, self._failed = choice, stamp, classifier.version, None
        return classifier
