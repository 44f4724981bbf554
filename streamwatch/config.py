"""Configuration: pydantic models, loading, validation and masking, all in one place.

Every error the operator can see names the file, the key path (``cameras[3].url``)
and what is wrong. Unknown keys are errors. Nothing outside this module parses YAML.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from ipaddress import IPv4Address

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    ValidationError,
    field_validator,
    model_validator,
)

from streamwatch import FAULT_NAMES

#: Config files larger than this are refused before parsing (YAML bombs, wrong file).
MAX_CONFIG_BYTES = 1_000_000
#: YAML aliases are refused beyond this count ("billion laughs" expansion).
MAX_YAML_ALIASES = 50

CAMERA_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
MASK = "***"


class ConfigError(Exception):
    """A config file that cannot be used. ``str()`` is the operator-facing message."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {key}: {msg}" if key else f"{self.path}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TLSConfig(_Strict):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Skip hostname verification (self-signed test brokers only).
    insecure: bool = False

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class DiscoveryConfig(_Strict):
    """Home Assistant MQTT discovery."""

    enabled: bool = True
    prefix: str = "homeassistant"


def _writable_dir(path: Path) -> bool:
    """True if ``path`` exists writable or could be created (nothing is created here)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def default_state_dir() -> Path:
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    system = Path("/var/lib/streamwatch")
    if _writable_dir(system):
        return system
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "streamwatch"


def _default_client_id() -> str:
    return f"streamwatch-{socket.gethostname()}"[:64]


class MQTTConfig(_Strict):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    #: Read the password from this file (first line); keeps it out of the config.
    password_file: Path | None = None
    #: Read the password from this environment variable.
    password_env: str | None = None
    tls: TLSConfig = TLSConfig()
    client_id: str = Field(default_factory=_default_client_id, min_length=1, max_length=128)
    topic_prefix: str = Field("streamwatch", pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
    qos: Literal[0, 1, 2] = 1
    keepalive: int = Field(30, ge=5, le=3600)
    discovery: DiscoveryConfig = DiscoveryConfig()

    @model_validator(mode="after")
    def _one_password_source(self) -> MQTTConfig:
        given = [k for k in ("password", "password_file", "password_env") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give only one of password, password_file, password_env (got {', '.join(given)})")
        return self

    def resolve_password(self) -> str | None:
        """The broker password from whichever source is configured."""
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            return read_password_file(self.password_file)
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


def read_password_file(path: Path) -> str:
    """The first line of a password file, stripped. OSError if unreadable, ValueError if empty."""
    lines = path.read_text(encoding="utf-8").splitlines()  # UnicodeDecodeError is a ValueError
    password = lines[0].strip() if lines else ""
    if not password:
        raise ValueError("file is empty (the password is its first line)")
    return password


class FaultSettings(_Strict):
    """Per-fault detection settings; every field optional so cameras override only what they name."""

    enabled: bool | None = None
    #: Minimum confidence (0..1) for a sample to count as positive.
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: Consecutive positive samples before the fault is raised.
    raise_after: int | None = Field(None, ge=1, le=1000)
    #: Consecutive negative samples before a raised fault clears.
    clear_after: int | None = Field(None, ge=1, le=1000)
    #: Local-time windows ("HH:MM-HH:MM", may wrap midnight) in which this fault is never
    #: raised (e.g. monochrome while the camera is in IR night mode by design).
    suppress: list[str] | None = None

    @field_validator("suppress")
    @classmethod
    def _windows(cls, value: list[str] | None) -> list[str] | None:
        for window in value or []:
            parse_window(window)
        return value


def parse_window(window: str) -> tuple[int, int]:
    """``"20:00-06:30"`` -> (1200, 390) minutes after midnight; ValueError if malformed."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", window)
    if not match:
        raise ValueError(f"suppress window {window!r} must look like 'HH:MM-HH:MM'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"suppress window {window!r} has an invalid time")
    return h1 * 60 + m1, h2 * 60 + m2


class EffectiveFault(BaseModel):
    """Fully resolved settings of one fault on one camera."""

    model_config = ConfigDict(frozen=True)
    enabled: bool
    threshold: float
    raise_after: int
    clear_after: int
    suppress: tuple[str, ...] = ()

    def suppressed_at(self, minute_of_day: int) -> bool:
        """True inside any suppression window (windows may wrap midnight)."""
        for window in self.suppress:
            start, end = parse_window(window)
            inside = start <= minute_of_day < end if start <= end else (minute_of_day >= start or minute_of_day < end)
            if inside:
                return True
        return False


# 0.5 on the smoothed class probability: the fault is the classifier's most likely verdict.
FAULT_DEFAULTS: dict[str, EffectiveFault] = {
    name: EffectiveFault(enabled=True, threshold=0.5, raise_after=3, clear_after=5) for name in FAULT_NAMES
}
# Loss of signal is already debounced by signal_timeout; one more sample confirms it.
FAULT_DEFAULTS["signal_lost"] = EffectiveFault(enabled=True, threshold=0.5, raise_after=1, clear_after=2)


FaultMap = dict[str, FaultSettings]


def _check_fault_names(value: FaultMap) -> FaultMap:
    unknown = sorted(set(value) - set(FAULT_NAMES))
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; known faults: {', '.join(FAULT_NAMES)}")
    return value


DecodeMode = Literal["auto", "all", "keyframes"]


class DefaultsConfig(_Strict):
    sample_interval: float = Field(1.0, gt=0.0, le=3600.0)
    signal_timeout: float = Field(20.0, gt=0.0, le=3600.0)
    frozen_after: float = Field(10.0, gt=0.0, le=86400.0)
    #: Mean absolute grey difference (0..255) between consecutive decoded frames at or
    #: under which a sample counts as "still". See streamwatch/checks/temporal.py.
    frozen_noise_floor: float = Field(0.01, ge=0.0, le=50.0)
    #: Largest 16x16-cell grey difference between samples that counts as a real change
    #: (a clock ticking, a person moving) and restarts the frozen timer.
    frozen_change_threshold: float = Field(2.5, gt=0.0, le=255.0)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    #: How frames are decoded: "all" (OpenCV, every frame), "keyframes" (PyAV, keyframes
    #: plus their successor only) or "auto" (see streamwatch/daemon.py: choose_decode).
    decode: DecodeMode = "auto"
    faults: FaultMap = Field(default_factory=dict)

    _faults_known = field_validator("faults")(_check_fault_names)


class MaskRegion(_Strict):
    """A privacy-mask rectangle of a camera, in fractions of the frame (0..1 from the top-left
    corner), so it holds for the main and the sub-stream alike. The classifier sees it filled
    from its surroundings (``streamwatch.model.masks``)."""

    x: float = Field(ge=0.0, lt=1.0)
    y: float = Field(ge=0.0, lt=1.0)
    width: float = Field(gt=0.0, le=1.0)
    height: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _inside_frame(self) -> "MaskRegion":
        if self.x + self.width > 1.0 + 1e-9 or self.y + self.height > 1.0 + 1e-9:
            raise ValueError(
                f"mask x + width ({self.x + self.width:g}) and y + height ({self.y + self.height:g}) must be "
                "at most 1: regions are fractions of the frame"
            )
        if self.width * self.height > 0.5:
            raise ValueError("a mask may cover at most half of the frame (the classifier judges the rest)")
        return self


class CameraConfig(_Strict):
    id: str = Field(pattern=CAMERA_ID_PATTERN)
    url: str = Field(min_length=1)
    name: str | None = None
    enabled: bool = True
    #: Repeat a file source forever (demo, tests); ignored for network streams.
    loop: bool = False
    sample_interval: float | None = Field(None, gt=0.0, le=3600.0)
    signal_timeout: float | None = Field(None, gt=0.0, le=3600.0)
    frozen_after: float | None = Field(None, gt=0.0, le=86400.0)
    frozen_noise_floor: float | None = Field(None, ge=0.0, le=50.0)
    frozen_change_threshold: float | None = Field(None, gt=0.0, le=255.0)
    rtsp_transport: Literal["tcp", "udp"] | None = None
    decode: DecodeMode | None = None
    faults: FaultMap = Field(default_factory=dict)
    #: Privacy-mask regions, filled before classification (streamwatch.model.masks).
    masks: list[MaskRegion] = Field(default_factory=list, max_length=32)

    _faults_known = field_validator("faults")(_check_fault_names)

    @field_validator("id", mode="before")
    @classmethod
    def _id_hint(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(CAMERA_ID_PATTERN, value):
            raise ValueError(
                f"camera id {value!r} must be a slug: lower-case letters, digits, '_' or '-', "
                "starting with a letter or digit, at most 63 characters (it becomes an MQTT topic level)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url_kind(cls, value: str) -> str:
        # Messages never repeat the URL: it may hold credentials.
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if "://" in value and scheme not in NETWORK_SCHEMES and scheme != "file":
            raise ValueError(f"unsupported URL scheme {scheme!r}; use rtsp://, rtsps://, http(s):// or a file path")
        if scheme in NETWORK_SCHEMES:
            try:
                parts.port  # noqa: B018 - raises for an out-of-range or non-numeric port
            except ValueError as exc:
                raise ValueError(f"not a valid URL ({exc})") from None
            if not parts.hostname:
                raise ValueError("not a valid URL (no host name)")
        return value

    @property
    def is_file(self) -> bool:
        return urlsplit(self.url).scheme.lower() not in NETWORK_SCHEMES

    @property
    def display_name(self) -> str:
        return self.name or self.id


class ModelConfig(_Strict):
    enabled: bool = True
    #: ONNX model file; None means the model shipped with streamwatch.
    path: Path | None = None
    threads: int = Field(1, ge=1, le=64)
    #: Inference engine: auto (openvino-bf16 where the CPU has BF16, else onnxruntime),
    #: onnxruntime (fp32), openvino (fp32) or openvino-bf16 (docs/performance.md).
    runtime: Literal["auto", "onnxruntime", "openvino", "openvino-bf16"] = "auto"
    batch_size: int = Field(8, ge=1, le=256)
    #: Longest a sample waits for a batch to fill, seconds.
    max_wait: float = Field(0.1, ge=0.0, le=10.0)
    #: Threads that make each sampled frame's views and measurements for the batcher (1 = the
    #: batcher thread does it). 2 lifts the sample rate where the batcher is the limit (the
    #: onnxruntime runtime at ~100 cameras) for ~5 % more CPU (docs/performance.md).
    preprocess_workers: int = Field(1, ge=1, le=8)


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto = coloured console on a TTY, JSON lines otherwise (journald).
    format: Literal["auto", "json", "console"] = "auto"


class ReservoirConfig(_Strict):
    """Frames kept on disk for the site trainer (see streamwatch/reservoir.py)."""

    enabled: bool = True
    #: Folder; default ``<state_dir>/reservoir``.
    dir: Path | None = None
    #: Total disk budget in megabytes, shared equally by the cameras.
    max_mb: float = Field(2000, gt=0)
    frames_per_camera: int = Field(200, ge=1, le=100_000)
    fault_frames: int = Field(50, ge=0, le=100_000)
    #: At most one stored frame per camera (and kind) per this many seconds.
    min_interval: float = Field(60.0, ge=0.0)
    #: Normal frames are stored only when the classifier is at least this sure.
    min_confidence: float = Field(0.9, ge=0.0, le=1.0)


class TrainerConfig(_Strict):
    """The site trainer (``streamwatch trainer``, streamwatch/train/site.py, docs/site-adaptation.md)."""

    #: Base dataset from ``streamwatch dataset build`` (``train/`` for replay, ``test/`` is the
    #: fixed base test set). Default ``<state_dir>/trainer/base``.
    base_data: Path | None = None
    #: Share of each fine-tuning epoch drawn from the base training data (no forgetting).
    replay_share: float = Field(0.3, ge=0.0, lt=1.0)
    #: Gate: the candidate may be at most this much worse in base test accuracy (0.005 = 0.5 points).
    base_tolerance: float = Field(0.005, ge=0.0, le=1.0)
    #: Gate: no single class of the base test set may lose more accuracy than this (1.0 = no check).
    base_class_drop: float = Field(0.10, ge=0.0, le=1.0)
    #: Base test images per class used by the gate (the first N in name order: fixed across runs).
    base_test_per_class: int = Field(100, ge=1, le=100_000)
    #: Share of each camera's site frames held out for the gate (split by camera and time).
    heldout_share: float = Field(0.25, gt=0.0, lt=1.0)
    #: Frames of one camera within one bucket of this many minutes land on the same side.
    split_minutes: float = Field(60.0, gt=0.0)
    #: No refresh with fewer normal site frames than this (all cameras together).
    min_site_frames: int = Field(40, ge=2)
    epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=1024)
    lr: float = Field(3e-4, gt=0.0, le=1.0)
    #: Model versions kept in the registry (older ones are pruned with their state dicts).
    keep: int = Field(5, ge=1, le=100)
    #: Torch / onnxruntime threads of the trainer (leave cores to the daemon).
    threads: int = Field(1, ge=1, le=64)
    #: Process niceness the trainer sets for itself (0..19); I/O priority is set to idle.
    nice: int = Field(19, ge=0, le=19)
    seed: int = Field(0, ge=0)


class ShardConfig(_Strict):
    """Run several replicas over one camera list (see streamwatch/sharding.py)."""

    count: int = Field(1, ge=1, le=10_000)
    #: This replica's index; None = the StatefulSet pod ordinal from $HOSTNAME (``name-N``).
    index: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _index_in_range(self) -> ShardConfig:
        if self.index is not None and self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        return self

    def resolved_index(self) -> int:
        if self.index is not None:
            return self.index
        if self.count == 1:
            return 0
        from streamwatch.sharding import ordinal_from_hostname

        ordinal = ordinal_from_hostname()
        if ordinal is None or ordinal >= self.count:
            raise ValueError(
                f"shard.index is not set and HOSTNAME={os.environ.get('HOSTNAME', '')!r} has no ordinal below "
                f"shard.count={self.count}"
            )
        return ordinal


class PatrolConfig(_Strict):
    """Patrol mode (streamwatch/patrol.py, docs/patrol.md): for thousands of cameras per box a
    bounded pool of workers visits the cameras in turn - connect, take ``samples`` samples spread
    over ``dwell`` seconds, disconnect - instead of one always-connected reader per camera."""

    enabled: bool = False
    #: Target seconds for one round over every camera (each camera is visited once per round).
    #: A round that takes longer starts the next one at once (and logs ``patrol_behind``); 0 = no pause.
    cycle: float = Field(300.0, ge=0.0, le=86400.0)
    #: Seconds from a visit's first frame over which its samples are spread.
    dwell: float = Field(6.0, gt=0.0, le=600.0)
    #: Samples per visit (>= 2: the frozen check compares the samples of one visit).
    samples: int = Field(3, ge=2, le=100)
    #: Cameras visited at the same time (connections open at once).
    workers: int = Field(8, ge=1, le=1024)
    #: Seconds a visit waits for its first frame (open + first keyframe) before it counts as lost.
    open_timeout: float = Field(8.0, gt=0.0, le=300.0)
    #: Open attempts per visit before the camera counts as lost for this visit.
    attempts: int = Field(2, ge=1, le=10)
    #: Debounce across visits: a fault is raised after this many positive visits in a row ...
    raise_visits: int = Field(1, ge=1, le=100)
    #: ... and cleared after this many negative visits in a row.
    clear_visits: int = Field(1, ge=1, le=100)


class SpoolConfig(_Strict):
    #: Transitions kept on disk while the broker is unreachable; oldest dropped beyond this.
    max_events: int = Field(100_000, ge=10, le=10_000_000)


class MetricsTLSConfig(_Strict):
    """HTTPS for the metrics endpoint; with ``client_ca_file`` only scrapers holding a
    certificate signed by that CA get an answer (mutual TLS: the endpoint's authentication)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class Config(_Strict):
    mqtt: MQTTConfig = MQTTConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)
    model: ModelConfig = ModelConfig()
    log: LogConfig = LogConfig()
    #: Event spool and open-fault memory. Default: $STATE_DIRECTORY (set by systemd's
    #: StateDirectory=), else /var/lib/streamwatch when writable, else ~/.local/state/streamwatch.
    state_dir: Path = Field(default_factory=lambda: default_state_dir())
    spool: SpoolConfig = SpoolConfig()
    reservoir: ReservoirConfig = ReservoirConfig()
    trainer: TrainerConfig = TrainerConfig()
    shard: ShardConfig = ShardConfig()
    patrol: PatrolConfig = PatrolConfig()
    #: Port of the Prometheus metrics endpoint; None disables it.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    #: Address the metrics endpoint listens on (e.g. 127.0.0.1 or a management interface).
    metrics_bind: IPvAnyAddress = IPv4Address("0.0.0.0")
    #: Serve metrics over HTTPS, optionally requiring client certificates.
    metrics_tls: MetricsTLSConfig | None = None

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: dict[str, int] = {}
        for index, cam in enumerate(cameras):
            if cam.id in seen:
                raise ValueError(f"duplicate camera id {cam.id!r} (also cameras[{seen[cam.id]}])")
            seen[cam.id] = index
        return cameras

    # -- effective per-camera values -------------------------------------------------

    def enabled_cameras(self) -> list[CameraConfig]:
        """Enabled cameras that this replica watches (all of them unless sharded)."""
        cameras = [c for c in self.cameras if c.enabled]
        if self.shard.count == 1:
            return cameras
        from streamwatch.sharding import owner

        index = self.shard.resolved_index()
        return [c for c in cameras if owner(c.id, self.shard.count) == index]

    def camera_value(self, camera: CameraConfig, key: str) -> Any:
        """A per-camera setting, falling back to ``defaults``."""
        value = getattr(camera, key)
        return getattr(self.defaults, key) if value is None else value

    def fault_settings(self, camera: CameraConfig) -> dict[str, EffectiveFault]:
        """Built-in defaults, overridden by ``defaults.faults``, overridden by the camera's ``faults``."""
        resolved = {}
        for name, base in FAULT_DEFAULTS.items():
            merged = base.model_dump()
            for layer in (self.defaults.faults.get(name), camera.faults.get(name)):
                if layer is not None:
                    merged.update(layer.model_dump(exclude_none=True))
            merged["suppress"] = tuple(merged.get("suppress") or ())
            resolved[name] = EffectiveFault(**merged)
        return resolved


# -- loading --------------------------------------------------------------------------


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('cameras', 3, 'url')`` -> ``cameras[3].url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pydantic_problems(err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in err.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append((format_loc(loc), msg))
    return problems


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases so an alias bomb is refused, not expanded."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.alias_count = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} YAML aliases; refusing to expand")
        return super().compose_node(parent, index)


def parse_yaml(text: str, path: Path | str) -> Any:
    """Parse YAML safely or raise ConfigError with line and column."""
    loader = None
    try:
        loader = _NoAliasLoader(text)  # the reader already rejects control characters here
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, [("", f"invalid YAML: {where}{exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [("", f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _resolve_relative_paths(config: Config, base: Path) -> list[tuple[str, str]]:
    """Make file paths relative to the config file's folder; report missing video files."""
    problems = []
    for index, cam in enumerate(config.cameras):
        if cam.is_file:
            raw = cam.url[len("file://") :] if cam.url.startswith("file://") else cam.url
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = (base / path).resolve()
            cam.url = str(path)
            if not path.is_file():
                problems.append((f"cameras[{index}].url", f"video file not found: {path}"))
    for key in ("password_file",):
        value = getattr(config.mqtt, key)
        if value is not None and not value.is_absolute():
            setattr(config.mqtt, key, (base / value).resolve())
    tls = config.mqtt.tls
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value is not None:
            if not value.is_absolute():
                value = (base / value).resolve()
                setattr(tls, key, value)
            if not value.is_file():
                problems.append((f"mqtt.tls.{key}", f"file not found: {value}"))
    if config.metrics_tls is not None:
        for key in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(config.metrics_tls, key)
            if value is not None:
                if not value.is_absolute():
                    value = (base / value).resolve()
                    setattr(config.metrics_tls, key, value)
                if not value.is_file():
                    problems.append((f"metrics_tls.{key}", f"file not found: {value}"))
    if config.mqtt.password_file is not None:
        if not config.mqtt.password_file.is_file():
            problems.append(("mqtt.password_file", f"file not found: {config.mqtt.password_file}"))
        else:
            # Checked here, not at the first connect: an empty or unreadable file is a config error.
            try:
                read_password_file(config.mqtt.password_file)
            except UnicodeDecodeError:
                problems.append(("mqtt.password_file", f"not UTF-8 text: {config.mqtt.password_file}"))
            except ValueError as exc:
                problems.append(("mqtt.password_file", f"{exc}: {config.mqtt.password_file}"))
            except OSError as exc:
                problems.append(("mqtt.password_file", f"cannot read {config.mqtt.password_file}: {exc.strerror or exc}"))
    if config.model.path is not None and not config.model.path.is_absolute():
        config.model.path = (base / config.model.path).resolve()
    if not config.state_dir.is_absolute():
        config.state_dir = (base / config.state_dir).resolve()
    if config.shard.count > 1:
        try:
            index = config.shard.resolved_index()
        except ValueError as exc:
            problems.append(("shard.index", str(exc)))
        else:
            # Replicas may share a host (and a config): keep their state and MQTT sessions apart.
            config.shard.index = index
            config.state_dir = config.state_dir / f"shard-{index}"
            config.mqtt.client_id = f"{config.mqtt.client_id}-shard{index}"
    if config.reservoir.dir is None:
        config.reservoir.dir = config.state_dir / "reservoir"
    elif not config.reservoir.dir.is_absolute():
        config.reservoir.dir = (base / config.reservoir.dir).resolve()
    if config.trainer.base_data is None:
        config.trainer.base_data = config.state_dir / "trainer" / "base"
    elif not config.trainer.base_data.is_absolute():
        config.trainer.base_data = (base / config.trainer.base_data).resolve()
    return problems


def config_from_data(data: Any, path: Path | str = "<config>", base: Path | None = None) -> Config:
    """Validate already-parsed data; raise ConfigError naming key paths."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [("", f"top level must be a mapping of keys, not {type(data).__name__}")])
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(path, _pydantic_problems(err)) from None
    problems = _resolve_relative_paths(config, base or Path(path).resolve().parent)
    if problems:
        raise ConfigError(path, problems)
    return config


def load_config(path: Path | str) -> Config:
    """Read, parse and validate a config file. Raises ConfigError, never anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(path, [("", f"file is {size} bytes; config files are limited to {MAX_CONFIG_BYTES}")])
        raw = path.read_bytes()
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError(path, [("", f"cannot read file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    return config_from_data(parse_yaml(text, path), path, path.resolve().parent)


# -- masking ----------------------------------------------------------------------------


#: Query parameters whose values are secrets (some cameras take ``?user=..&password=..``).
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd|passphrase|token|access_token|secret|auth|key)=)[^&;#]*")


def mask_url(url: str) -> str:
    """Hide the user and password of a URL: ``rtsp://admin:pw@h/x`` -> ``rtsp://***@h/x``.

    Does not depend on the URL being valid (an out-of-range port, a broken IPv6 literal or an
    unencoded ``/`` or ``@`` in the password are masked too): everything between ``scheme://``
    and the last ``@`` before the query is replaced, and so are the values of password-like
    query parameters (``password=``, ``pwd=``, ``token=``...). Never raises.
    """
    if not isinstance(url, str):
        return MASK
    scheme_end = url.find("://")
    if scheme_end > 0:
        start = scheme_end + 3
        stop = len(url)
        for sep in ("?", "#"):
            index = url.find(sep, start)
            if index != -1:
                stop = min(stop, index)
        at = url.rfind("@", start, stop)
        if at != -1:
            url = f"{url[:start]}{MASK}{url[at:]}"
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, url)


def masked_dump(config: Config) -> dict[str, Any]:
    """The effective config as plain data with every secret replaced by ``***``."""
    data = config.model_dump(mode="json")
    if data["mqtt"].get("password"):
        data["mqtt"]["password"] = MASK
    for cam, cam_data in zip(config.cameras, data["cameras"]):
        cam_data["url"] = mask_url(cam.url)
        cam_data["effective"] = {
            "sample_interval": config.camera_value(cam, "sample_interval"),
            "signal_timeout": config.camera_value(cam, "signal_timeout"),
            "frozen_after": config.camera_value(cam, "frozen_after"),
            "faults": {k: v.model_dump() for k, v in config.fault_settings(cam).items()},
        }
    return data

