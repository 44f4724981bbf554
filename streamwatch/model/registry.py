"""Versioned models on disk: promotion (write, verify, rename), history, rollback.

Layout under ``<state_dir>/models/``::

    registry.json            {"current": VERSION|null, "versions": [entry, ...]}  (newest last)
    <version>.onnx           one file per kept version

Each entry records the file's sha256; :func:`load_current` refuses a file whose
checksum no longer matches (a truncated copy, a swapped file). registry.json is
replaced atomically (write to a temporary file, fsync, rename), so a crash at any
moment leaves either the old or the new registry, never half of one.
No pickle is ever loaded from here: models are ONNX files run by onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REGISTRY_FILE = "registry.json"
DEFAULT_KEEP = 5


class RegistryError(Exception):
    """The registry or a model in it cannot be used; the message is for the operator."""


@dataclass
class ModelEntry:
    version: str
    file: str
    sha256: str
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ModelRegistry:
    def __init__(self, root: Path, keep: int = DEFAULT_KEEP):
        self.root = Path(root)
        self.keep = max(1, keep)

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    # -- reading ----------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        if not self.registry_path.exists():
            return {"current": None, "versions": []}
        try:
            data = json.loads(self.registry_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
                raise ValueError("not a registry object")
            return data
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.registry_path}: unreadable model registry ({exc})") from None

    def entries(self) -> list[ModelEntry]:
        return [ModelEntry(**e) for e in self._read()["versions"]]

    def current(self) -> ModelEntry | None:
        data = self._read()
        for entry in data["versions"]:
            if entry["version"] == data.get("current"):
                return ModelEntry(**entry)
        return None

    def stamp(self) -> tuple[int, int] | None:
        """Cheap change detector for the daemon's poll (mtime_ns, size) of registry.json."""
        try:
            st = self.registry_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current_path(self) -> tuple[Path, str] | None:
        """(file, expected sha256) of the current model, or None when nothing was promoted."""
        entry = self.current()
        if entry is None:
            return None
        return self.root / entry.file, entry.sha256

    def verify(self, entry: ModelEntry) -> Path:
        path = self.root / entry.file
        if not path.is_file():
            raise RegistryError(f"model {entry.version}: file {path} is missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise RegistryError(f"model {entry.version}: checksum mismatch for {path} (file changed or truncated)")
        return path

    # -- writing ----------------------------------------------------------------------

    def _write(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.registry_path, json.dumps(data, indent=1).encode())

    def promote(self, candidate: Path, version: str, metrics: dict[str, Any] | None = None, note: str = "") -> ModelEntry:
        """Copy ``candidate`` in, verify the copy, make it current, prune beyond ``keep``."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = self._read()
        if any(e["version"] == version for e in data["versions"]):
            raise RegistryError(f"model version {version} already exists")
        expected = sha256_file(candidate)
        name = f"{version}.onnx"
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        os.close(fd)
        try:
            shutil.copyfile(candidate, tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            if sha256_file(Path(tmp)) != expected:
                raise RegistryError(f"copy of {candidate} does not match its checksum")
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        entry = ModelEntry(
            version=version,
            file=name,
            sha256=expected,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            metrics=metrics or {},
            note=note,
        )
        data["versions"].append(asdict(entry))
        data["current"] = version
        removed = data["versions"][: -self.keep]
        data["versions"] = data["versions"][-self.keep :]
        self._write(data)
        for old in removed:
            (self.root / old["file"]).unlink(missing_ok=True)
        return entry

    def rollback(self, version: str | None = None) -> ModelEntry:
        """Make ``version`` (default: the one before the current) current again."""
        data = self._read()
        versions = [e["version"] for e in data["versions"]]
        if version is None:
            if data.get("current") not in versions or versions.index(data["current"]) == 0:
                raise RegistryError("no earlier model version to roll back to")
            version = versions[versions.index(data["current"]) - 1]
        if version not in versions:
            raise RegistryError(f"unknown model version {version}; known: {', '.join(versions) or 'none'}")
        entry = ModelEntry(**data["versions"][versions.index(version)])
        self.verify(entry)
        data["current"] = version
        self._write(data)
        return entry
