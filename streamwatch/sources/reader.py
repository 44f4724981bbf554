"""One camera, one thread: OpenCV ``VideoCapture`` (FFmpeg backend) into a newest-frame slot.

``CameraReader`` owns exactly one daemon thread. The thread opens the source, decodes frames
and puts each one into a single slot guarded by a lock, replacing the previous one: a consumer
calling ``latest()`` gets the newest decoded frame and never a backlog, however slowly it reads.
``Frame.seq`` grows by one per delivered frame, so a consumer can tell a new frame from one it
has already seen (``latest(newer_than=seq)`` does it for you).

File sources (a local path or ``file://``) are played at their native frame rate, like a live
camera: frame n is due at ``t0 + n / fps`` on the monotonic clock (no drift). A reader that
falls behind skips frames (``grab()``) to get back onto the clock, and after a stall of more
than a second it re-anchors the clock instead of catching up. ``loop=True`` reopens the file at
its end without a gap in the frame clock; without it the reader sets ``ended`` and stops.

Network sources (rtsp, rtsps, http, https): an open failure, a read failure or no frame within
``read_timeout`` releases the capture and reconnects forever with ``Backoff`` delays (reset once
frames have flowed for ``stable_after`` seconds). RTSP runs over TCP unless
``rtsp_transport="udp"``: OpenCV takes the transport only from the process-global environment
variable ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, so every open goes through ``_EnvGate``, which lets
opens that need the same value run concurrently and serialises only opens that need a different
one (a dead camera's 10 s open timeout does not hold up the other cameras).

Logging (structlog, never per frame): ``camera_connected`` on every successful (re)connect,
``camera_disconnected`` / ``camera_unavailable`` when a working source fails or the first
attempt fails, then at most one ``camera_still_unavailable`` per ``log_interval`` while it
stays down; ``camera_file_ended`` at the end of a non-looping file. URLs are masked with
``mask_url`` and any message from OpenCV/FFmpeg is scrubbed of credentials.

Stopping: ``stop(timeout)`` sets a flag the thread checks between frames and during backoff
waits, then joins. OpenCV cannot be interrupted from another thread (``release()`` during a
``read()`` in another thread is a use-after-free), so a read blocked on a silent network source
ends at ``read_timeout`` (an open at ``open_timeout``); ``stop`` returns ``False`` if the thread
has not ended within ``timeout``, and the daemon thread then exits on its own as soon as the
pending call returns, releasing the capture.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import structlog

from streamwatch.config import _SECRET_QUERY, NETWORK_SCHEMES, mask_url
from streamwatch.events import Frame
from streamwatch.sources.backoff import Backoff

log = structlog.get_logger(__name__)

OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
#: Frame rate assumed when a file reports none (or nonsense).
DEFAULT_FPS = 25.0
#: Consecutive unusable frames (empty, odd shape) after which a connection counts as failed.
MAX_BAD_FRAMES = 100



def configure_native_logging() -> None:
    """Keep FFmpeg and OpenCV from writing a stderr line per failed (re)connect attempt.

    FFmpeg's own messages bypass structlog (one per retry, and some could echo a URL), so they
    are silenced unless the operator asks for them: ``OPENCV_FFMPEG_LOGLEVEL`` (an FFmpeg
    ``AV_LOG_*`` number, e.g. 16 for errors) and ``OPENCV_LOG_LEVEL`` set in the environment win.
    OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` once, at its first FFmpeg capture, so this runs when
    this module is imported.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # pragma: no cover - very old OpenCV
            pass


configure_native_logging()

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]*@")


class MotionMeterLike(Protocol):
    def update(self, image: np.ndarray) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    connected: bool  # a capture is open and delivering
    frames: int  # frames delivered since start()
    reconnects: int  # (re)open attempts after the first one (file loops not counted)
    last_frame_mono: float | None  # time.monotonic() of the newest frame
    last_error: str | None  # why the source last failed (credentials scrubbed); None after frames flow
    ended: bool  # a non-looping file reached its end; nothing more will come


class _EnvGate:
    """Serialises OpenCV opens that need different ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` values.

    ``hold(value)`` waits until no open with another value is in flight, sets the variable and
    admits every open that wants the same value (``None``: any value will do, e.g. files).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._value: str | None = os.environ.get(OPTIONS_ENV)

    def acquire(self, value: str | None, stop: threading.Event | None = None) -> bool:
        with self._cond:
            while self._active and value is not None and self._value != value:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            if value is not None and self._value != value:
                os.environ[OPTIONS_ENV] = value
                self._value = value
            self._active += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()


#: OPENCV_FFMPEG_CAPTURE_OPTIONS as the operator set it before this module was imported.
_BASE_OPTIONS = os.environ.get(OPTIONS_ENV, "")
_ENV_GATE = _EnvGate()


def is_network_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in NETWORK_SCHEMES


def normalise_image(image: Any) -> np.ndarray | None:
    """BGR uint8 H x W x 3 from whatever a decoder returned, or None if unusable."""
    if not isinstance(image, np.ndarray) or image.size == 0 or image.ndim not in (2, 3):
        return None
    if image.shape[0] < 2 or image.shape[1] < 2:
        return None
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif np.issubdtype(image.dtype, np.floating):
            scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
            image = np.clip(np.nan_to_num(image) * scale, 0, 255).astype(np.uint8)
        else:
            return None
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return None


class CameraReader:
    """Reads one camera on its own thread; see the module docstring."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        loop: bool = False,
        rtsp_transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        backoff: Backoff | None = None,
        log_interval: float = 300.0,
        stable_after: float = 5.0,
        decode_threads: int | None = None,
        motion_meter: Callable[[], MotionMeterLike] | None = None,
    ) -> None:
        if rtsp_transport not in ("tcp", "udp"):
            raise ValueError(f"rtsp_transport must be 'tcp' or 'udp', not {rtsp_transport!r}")
        self.camera_id = camera_id
        self.url = url
        self.masked_url = mask_url(url)
        self.is_network = is_network_url(url)
        self._source = url[len("file://") :] if url.startswith("file://") else url
        self.loop = loop and not self.is_network
        self.rtsp_transport = rtsp_transport
        self.open_timeout = float(open_timeout)
        self.read_timeout = float(read_timeout)
        self.backoff = backoff or Backoff()
        self.log_interval = float(log_interval)
        self.stable_after = float(stable_after)
        self.decode_threads = decode_threads
        self._motion_factory = motion_meter
        self._secrets = self._secret_strings(url)

        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._connected = False
        self._frames = 0
        self._reconnects = 0
        self._last_frame_mono: float | None = None
        self._last_error: str | None = None
        self._ended = False
        # written by the reader thread only
        self._seq = 0
        self._failing_since: float | None = None  # monotonic time of the first failure in a row
        self._failures = 0
        self._announced = False
        self._delivering = False
        self._open_error: str | None = None  # why _open() returned None, if it knows

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (no-op if it is running)."""
        if self._thread is not None and self._thread.is_alive():
            if not self._stop.is_set():
                return
            # stop() returned False earlier: the old thread must end first (one thread per reader).
            self._thread.join(self.open_timeout + self.read_timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{self!r}: previous reader thread is still blocked in OpenCV")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to stop and join it; True if it has ended within ``timeout`` seconds."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def latest(self, newer_than: int | None = None) -> Frame | None:
        """The newest frame, or None; with ``newer_than``, None unless its seq is larger."""
        with self._lock:
            frame = self._frame
        if frame is not None and newer_than is not None and frame.seq <= newer_than:
            return None
        return frame

    def status(self) -> ReaderStatus:
        with self._lock:
            return ReaderStatus(
                connected=self._connected,
                frames=self._frames,
                reconnects=self._reconnects,
                last_frame_mono=self._last_frame_mono,
                last_error=self._last_error,
                ended=self._ended,
            )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        return f"CameraReader({self.camera_id!r}, {self.masked_url!r})"

    # -- helpers --------------------------------------------------------------------------

    @property
    def _log(self) -> Any:
        # Bound per call (logging is rare) so structlog reconfiguration, e.g. capture_logs(), applies.
        return log.bind(camera=self.camera_id)

    @staticmethod
    def _secret_strings(url: str) -> list[str]:
        try:
            parts = urlsplit(url)
            found = [parts.password, parts.username]
        except ValueError:
            found = []
        found += [m.group(0).split("=", 1)[1] for m in _SECRET_QUERY.finditer(url)]  # ?password=...
        out = []
        for value in found:
            if value:
                out += [value, unquote(value)]
        return sorted({s for s in out if len(s) >= 3}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with the URL masked and any credential of this camera's URL removed."""
        text = text.replace(self.url, self.masked_url)
        text = _USERINFO.sub(r"\1***@", text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _capture_options(self) -> str | None:
        """The ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` value this camera needs (None: any will do).

        Options the operator set in the environment before start-up are kept; only
        ``rtsp_transport`` is replaced.
        """
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("rtsp", "rtsps"):
            return None
        kept = [opt for opt in _BASE_OPTIONS.split("|") if opt and not opt.startswith("rtsp_transport;")]
        return "|".join([*kept, f"rtsp_transport;{self.rtsp_transport}"])

    def _open(self) -> Any:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000),
        ]  # fmt: skip
        if self.decode_threads:
            params += [cv2.CAP_PROP_N_THREADS, int(self.decode_threads)]
        if not _ENV_GATE.acquire(self._capture_options(), self._stop):
            return None
        try:
            cap = cv2.VideoCapture(self._source, cv2.CAP_FFMPEG, params)
        finally:
            _ENV_GATE.release()
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, f"_{key}", value)

    # -- thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        self._failing_since = None
        self._failures = 0
        self._announced = False
        last_log = 0.0
        reconnecting = False
        clock = _FrameClock()
        motion = self._motion_factory() if self._motion_factory else None
        while not self._stop.is_set():
            if reconnecting:
                with self._lock:
                    self._reconnects += 1
            error: str | None = None
            self._open_error = None
            outcome = "error"
            self._delivering = False
            cap = None
            try:
                cap = self._open()
                if self._stop.is_set():
                    outcome = "stopped"
                elif cap is None:
                    error = self._open_error or (
                        "cannot open source" if self.is_network else f"cannot open file {self._source}"
                    )
                else:
                    outcome, error = self._pump(cap, clock, motion, time.monotonic())
            except Exception as exc:  # never let the thread die: log (once per failure streak), reconnect
                error = self.scrub(f"{type(exc).__name__}: {exc}")
                if self._failing_since is None:
                    self._log.error("reader_error", error=error)
            finally:
                if cap is not None:
                    try:
                        cap.release()
                    except Exception:  # pragma: no cover - release should not raise
                        pass
            if outcome == "stopped":
                break
            if outcome == "ended":
                self._set(connected=False, ended=True)
                self._log.info("camera_file_ended", url=self.masked_url, frames=self.status().frames)
                break
            if outcome == "rewind":
                reconnecting = False  # a loop is not a reconnect
                continue
            # failure of a source that delivered, or one that did not
            reconnecting = True
            now = time.monotonic()
            self._set(connected=False, last_error=error)
            self._failures += 1
            delay = self.backoff.next_delay()
            if self._failing_since is None:
                self._failing_since = last_log = now
                event = "camera_disconnected" if self._delivering else "camera_unavailable"
                self._log.warning(event, url=self.masked_url, error=error, retry_in=round(delay, 2))
            elif now - last_log >= self.log_interval:
                last_log = now
                self._log.warning(
                    "camera_still_unavailable",
                    url=self.masked_url,
                    error=error,
                    failures=self._failures,
                    down_for=round(now - self._failing_since, 1),
                    retry_in=round(delay, 2),
                )
            if self._stop.wait(delay):
                break
        self._set(connected=False)

    def _on_first_frame(self, cap: Any, image: np.ndarray) -> None:
        """Frames flow on this connection: it counts as connected from now on."""
        self._delivering = True
        self._set(connected=True)
        # Files: announce the first open and recoveries, not every loop.
        if self.is_network or self._failing_since is not None or not self._announced:
            fields: dict[str, Any] = {"url": self.masked_url, **self._describe(cap, image)}
            if self._failing_since is not None:
                fields.update(
                    failures=self._failures, down_for=round(time.monotonic() - self._failing_since, 1)
                )
            self._log.info("camera_connected", **fields)
            self._announced = True
        self._failing_since, self._failures = None, 0

    @staticmethod
    def _describe(cap: Any, image: np.ndarray) -> dict[str, Any]:
        fps = cap.get(cv2.CAP_PROP_FPS)
        return {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "fps": round(fps, 3) if fps and 0 < fps <= 1000 else None,
        }

    def _pump(
        self,
        cap: Any,
        clock: "_FrameClock",
        motion: MotionMeterLike | None,
        connected_at: float,
    ) -> tuple[str, str | None]:
        """Deliver frames until stop/EOF/failure: (outcome, error)."""
        pace = not self.is_network
        if pace:
            clock.set_fps(cap.get(cv2.CAP_PROP_FPS))
        delivered = 0
        bad = 0
        backoff_reset = False
        with_motion = motion is not None and "motion" in getattr(Frame, "__dataclass_fields__", {})
        while not self._stop.is_set():
            if pace:
                wait, skip = clock.wait_and_skip()
                if wait > 0 and self._stop.wait(wait):
                    return "stopped", None
                for _ in range(skip):
                    if not cap.grab():
                        break
            started = time.monotonic()
            ok, image = cap.read()
            if self._stop.is_set():
                return "stopped", None
            if not ok:
                if not self.is_network:
                    if delivered == 0:
                        return "error", f"no decodable frames in file {self._source}"
                    return ("rewind" if self.loop else "ended"), None
                elapsed = time.monotonic() - started
                if elapsed >= self.read_timeout * 0.9:
                    return "error", f"no frame within {self.read_timeout:g} s"
                return "error", "stream ended or read failed"
            if pace:
                clock.tick()
            frame_image = normalise_image(image)
            if frame_image is None:
                bad += 1
                if bad >= MAX_BAD_FRAMES:
                    return "error", f"{bad} unusable frames in a row"
                continue
            bad = 0
            if delivered == 0:
                self._on_first_frame(cap, frame_image)
            delivered += 1
            self._seq += 1
            now_mono = time.monotonic()
            extra = {}
            if with_motion:
                assert motion is not None
                extra["motion"] = motion.update(frame_image)
            frame = Frame(self.camera_id, frame_image, self._seq, time.time(), now_mono, **extra)
            with self._lock:
                self._frame = frame
                self._frames += 1
                self._last_frame_mono = now_mono
                self._last_error = None
            if not backoff_reset and now_mono - connected_at >= self.stable_after:
                self.backoff.reset()
                backoff_reset = True
            if not backoff_reset and not self.is_network:
                self.backoff.reset()
                backoff_reset = True
        return "stopped", None


class _FrameClock:
    """Real-time pacing for file sources: frame n due at ``t0 + n / fps`` (monotonic, no drift)."""

    #: Behind by more than this many seconds: re-anchor instead of skipping to catch up.
    MAX_CATCH_UP = 1.0

    def __init__(self) -> None:
        self.period = 1.0 / DEFAULT_FPS
        self.next_due: float | None = None
        self.skipped = 0

    @property
    def started(self) -> bool:
        return self.next_due is not None

    def set_fps(self, fps: float) -> None:
        if fps and fps == fps and 0.5 <= fps <= 240:
            self.period = 1.0 / float(fps)
        else:
            self.period = 1.0 / DEFAULT_FPS

    def wait_and_skip(self) -> tuple[float, int]:
        """(seconds to sleep before reading the next frame, frames to skip first)."""
        if self.next_due is None:  # anchored by the first frame (decoder start-up is not lag)
            return 0.0, 0
        now = time.monotonic()
        behind = now - self.next_due
        if behind < 0:
            return -behind, 0
        missed = int(behind / self.period)
        if missed == 0:
            return 0.0, 0
        if behind > self.MAX_CATCH_UP:
            self.next_due = now  # a long stall: start afresh, deliver the next frame now
            return 0.0, 0
        self.next_due += missed * self.period
        self.skipped += missed
        return 0.0, missed

    def tick(self) -> None:
        """A frame was read: the next one is due one period later."""
        if self.next_due is None:
            self.next_due = time.monotonic()
        self.next_due += self.period
