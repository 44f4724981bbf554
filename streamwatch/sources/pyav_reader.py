"""Keyframe-only camera reader with PyAV: the cheap way to watch many cameras (issue 5).

``PyAVReader`` has the public API of ``CameraReader`` (``start``, ``stop``, ``latest``,
``status``) and the same thread, reconnect, backoff, logging and credential rules; it inherits
them. Only opening and decoding differ: PyAV demuxes every packet but, with
``keyframes_only=True`` (the default), tells the decoder ``skip_frame = "NONKEY"`` so only
keyframes (IDR/I pictures) are decoded - about 13x less CPU than decoding every frame of a
1080p H.264 stream (``bench/decode.py``; ``/work/shared/notes/measurements.md``). A camera with
a keyframe every 2 s then yields one frame every 2 s, which is all a sampler that looks once
every 1-2 s needs.

Consequences for consumers:

* ``Frame.motion`` is None: consecutive decoded frames are a GOP apart, so the
  consecutive-frame difference a full decoder can measure does not exist here; the frozen check
  must compare samples (``checks.temporal`` does when ``motion`` is None).
* ``latest()`` can be up to one GOP old; ``Frame.captured_mono`` says when it was decoded.
* A stream without periodic keyframes (intra refresh) delivers nothing after the first frame
  and ends up ``signal_lost`` after ``read_timeout``: use ``keyframes_only=False`` there.

File sources are paced by the frames' presentation timestamps on the monotonic clock, looping
with continuous time like ``CameraReader``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from streamwatch.events import Frame
from streamwatch.sources.reader import MAX_BAD_FRAMES, CameraReader, normalise_image

try:
    import av
except ImportError:  # pragma: no cover - av is a dependency, but keep the import error clear
    av = None  # type: ignore[assignment]


class _PyAVCapture:
    """One open PyAV container and its video decoder."""

    def __init__(self, container: Any, keyframes_only: bool, threads: int | None):
        self.container = container
        self.stream = container.streams.video[0]
        ctx = self.stream.codec_context
        if keyframes_only:
            ctx.skip_frame = "NONKEY"
        ctx.thread_count = int(threads or 1)
        ctx.thread_type = "SLICE"  # frame threading would only add latency to sparse keyframes
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate else 0.0
        if container.duration:
            self.duration: float | None = container.duration / 1_000_000
        elif self.stream.duration and self.stream.time_base:
            self.duration = float(self.stream.duration * self.stream.time_base)
        else:
            self.duration = None
        self._packets = container.demux(self.stream)
        self._pending: list[Any] = []
        self._flushed = False

    def next_frame(self, stop: Any = None) -> Any | None:
        """The next decoded frame; None at the end of the stream or once ``stop`` is set.

        Works packet by packet so a stop request is seen between packets, not only between
        decoded keyframes (which may be seconds apart). Raises av errors.
        """
        while not self._pending:
            if stop is not None and stop.is_set():
                return None
            if self._flushed:
                return None
            try:
                packet = next(self._packets)
            except StopIteration:
                packet = None
            if packet is None or packet.size == 0 and packet.pts is None and packet.dts is None:
                # end of stream (the demuxer's final empty packet): drain the decoder
                self._flushed = True
                self._pending.extend(self.stream.codec_context.decode(None))
                continue
            self._pending.extend(packet.decode())
        return self._pending.pop(0)

    def release(self) -> None:
        try:
            self.container.close()
        except Exception:  # pragma: no cover - closing a broken container
            pass


class PyAVReader(CameraReader):
    """``CameraReader`` decoding with PyAV, keyframes only by default. See the module docstring."""

    def __init__(self, camera_id: str, url: str, *, keyframes_only: bool = True, **kwargs: Any) -> None:
        if av is None:  # pragma: no cover
            raise RuntimeError("PyAV (package 'av') is not installed")
        super().__init__(camera_id, url, **kwargs)
        self.keyframes_only = keyframes_only
        # File pacing state (reader thread only): media time -> monotonic time.
        self._anchor: tuple[float, float] | None = None  # (monotonic, media seconds)
        self._media_offset = 0.0  # added to frame times so loops continue the timeline
        self._media_last = 0.0

    def _open(self) -> _PyAVCapture | None:
        options = {}
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.rtsp_transport
        try:
            container = av.open(
                self._source,
                mode="r",
                options=options,
                timeout=(self.open_timeout, self.read_timeout),
            )
        except (av.error.FFmpegError, OSError) as exc:
            # The message names the URL: scrub it. Not an exception: a routine failed attempt.
            self._open_error = self.scrub(f"cannot open source: {type(exc).__name__}: {exc}")
            return None
        try:
            if not container.streams.video:
                raise ValueError("source has no video stream")
            return _PyAVCapture(container, self.keyframes_only, self.decode_threads)
        except Exception:
            container.close()
            raise

    @staticmethod
    def _describe(cap: Any, image: np.ndarray) -> dict[str, Any]:
        return {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "fps": round(cap.fps, 3) if 0 < cap.fps <= 1000 else None,
            "decoder": "pyav-keyframes" if cap.stream.codec_context.skip_frame != "DEFAULT" else "pyav",
        }

    def _pump(self, cap: Any, clock: Any, motion: Any, connected_at: float) -> tuple[str, str | None]:
        pace = not self.is_network
        delivered = bad = 0
        backoff_reset = False
        with_motion = (
            motion is not None and not self.keyframes_only and "motion" in getattr(Frame, "__dataclass_fields__", {})
        )
        period = 1.0 / cap.fps if 0 < cap.fps <= 1000 else 0.04
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                frame = cap.next_frame(self._stop)
            except av.error.ExitError:
                # The interrupt callback fired: no data within read_timeout.
                if self._stop.is_set():
                    return "stopped", None
                return "error", f"no frame within {self.read_timeout:g} s"
            except (av.error.FFmpegError, OSError) as exc:
                if self._stop.is_set():
                    return "stopped", None
                if not self.is_network and delivered:
                    return ("rewind" if self.loop else "ended"), None  # damaged tail of a file
                return "error", self.scrub(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                return "stopped", None
            if frame is None:
                if not self.is_network:
                    if delivered == 0:
                        return "error", f"no decodable frames in file {self._source}"
                    end = cap.duration if cap.duration else self._media_last - self._media_offset + period
                    self._media_offset += end
                    return ("rewind" if self.loop else "ended"), None
                if time.monotonic() - started >= self.read_timeout * 0.9:
                    return "error", f"no frame within {self.read_timeout:g} s"
                return "error", "stream ended"
            image = normalise_image(frame.to_ndarray(format="bgr24"))
            if image is None:
                bad += 1
                if bad >= MAX_BAD_FRAMES:
                    return "error", f"{bad} unusable frames in a row"
                continue
            bad = 0
            if pace:
                t = (frame.time if frame.time is not None else delivered * period) + self._media_offset
                self._media_last = t
                now = time.monotonic()
                if self._anchor is None or now - (self._anchor[0] + t - self._anchor[1]) > 1.0:
                    self._anchor = (now, t)  # first frame, or more than 1 s late: re-anchor
                wait = self._anchor[0] + (t - self._anchor[1]) - now
                if wait > 0 and self._stop.wait(wait):
                    return "stopped", None
            if delivered == 0:
                self._on_first_frame(cap, image)
            delivered += 1
            self._seq += 1
            now_mono = time.monotonic()
            extra = {"motion": motion.update(image)} if with_motion else {}
            out = Frame(self.camera_id, image, self._seq, time.time(), now_mono, **extra)
            with self._lock:
                self._frame = out
                self._frames += 1
                self._last_frame_mono = now_mono
                self._last_error = None
            if not backoff_reset and (not self.is_network or now_mono - connected_at >= self.stable_after):
                self.backoff.reset()
                backoff_reset = True
        return "stopped", None
