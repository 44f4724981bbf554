"""Keyframe-only camera reader with PyAV: the cheap way to watch many cameras (issue 5).

``PyAVReader`` has the public API of ``CameraReader`` (``start``, ``stop``, ``latest``,
``status``) and the same thread, reconnect, backoff, logging and credential rules; it inherits
them. Only opening and decoding differ: PyAV demuxes every packet but, with
``keyframes_only=True`` (the default), tells the decoder ``skip_frame = "NONKEY"`` so only
keyframes (IDR/I pictures) are decoded - about 13x less CPU than decoding every frame of a
1080p H.264 stream (``bench/decode.py``; ``docs/performance.md``). A camera with a keyframe
every 2 s then yields one frame every 2 s, which is all a sampler that looks once every 1-2 s
needs.

Motion for the frozen check: right after each keyframe the decoder is switched back to
``skip_frame = "DEFAULT"`` for exactly one frame, the keyframe's successor (a P frame that
references only the keyframe, so it decodes correctly), and then to ``NONKEY`` again.
``Frame.motion`` of the delivered keyframe is the mean grey difference between the keyframe and
its successor - two *consecutive* frames, as ``MotionMeter`` measures in the full decoder -
computed on nearest-neighbour thumbnails of the luma plane (no colour conversion of the
successor; limited-range luma is scaled by 255/219 to the BGR grey scale). The keyframe is
delivered once its successor is decoded (one frame period later). With ``successor_below``
(the daemon passes the frozen check's ``change_threshold``) the successor is decoded only when
the keyframe's largest 16x16-cell grey difference to the previous keyframe is below it - a
picture that visibly changed since the last keyframe is live whatever its successor shows - and
``Frame.motion`` is then that difference. Moving scenes thus cost keyframes only, static ones
keyframes plus successors. Cost: see docs/performance.md.

Consequences for consumers:

* ``latest()`` can be up to one GOP old; ``Frame.captured_mono`` says when it was decoded.
* A stream whose keyframes are far apart (long GOP, intra refresh) delivers few or no frames.
  With ``fallback_after=S`` the reader notices that no keyframe came for S seconds of stream
  time while packets kept arriving, logs ``decode_fallback`` and decodes every frame from then
  on (for the rest of its life, reconnects included; ``decode: auto`` in the daemon sets S to
  1.25 sample intervals). Without it a stream without keyframes ends up ``signal_lost``.

File sources are paced by the frames' presentation timestamps on the monotonic clock, looping
with continuous time like ``CameraReader``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from streamwatch.checks.temporal import grey_thumbnail, max_cell_difference, mean_difference
from streamwatch.events import Frame
from streamwatch.sources.reader import MAX_BAD_FRAMES, CameraReader, normalise_image

try:
    import av
except ImportError:  # pragma: no cover - av is a dependency, but keep the import error clear
    av = None  # type: ignore[assignment]


#: Consecutive packets the decoder rejects (any FFmpeg decode error) before the connection counts
#: as failed; single damaged packets are skipped (10 s of a 25 fps stream).
MAX_BAD_PACKETS = 250

#: Limited-range ("MPEG", 16..235) luma to the 0..255 grey scale of a BGR conversion.
_LIMITED_TO_FULL = 255.0 / 219.0
_FULL_RANGE_FORMATS = ("yuvj420p", "yuvj422p", "yuvj444p")


def luma_thumbnail(frame: Any) -> tuple[np.ndarray, float]:
    """(grey thumbnail of a decoded frame's luma plane, scale to the BGR grey scale).

    Reads the Y plane in place (no colour conversion); other pixel formats are converted.
    """
    fmt = frame.format.name
    if fmt.startswith(("yuv", "nv")) and not fmt.startswith(("yuva", "yuyv")):
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full = fmt in _FULL_RANGE_FORMATS or getattr(frame, "color_range", 0) == 2  # AVCOL_RANGE_JPEG
        return grey_thumbnail(y), (1.0 if full else _LIMITED_TO_FULL)
    return grey_thumbnail(frame.to_ndarray(format="gray")), 1.0


def frame_to_bgr(frame: Any) -> np.ndarray | None:
    """A decoded frame as a normalised BGR image; None when it cannot be converted.

    A damaged stream can decode into a frame whose (corrupted) format or size the scaler refuses
    (FFmpeg answers ENOTSUP); that is one unusable frame, like an odd-shaped one, not a reason to
    drop the connection.
    """
    try:
        return normalise_image(frame.to_ndarray(format="bgr24"))
    except (av.error.FFmpegError, ValueError):
        return None


class _PyAVCapture:
    """One open PyAV container and its video decoder.

    ``keyframes_only``: decode keyframes plus the one frame after each (see the module
    docstring). ``fallback_after``: seconds of stream time without a keyframe after which the
    decoder switches to every frame (``fell_back`` becomes True).
    """

    def __init__(self, container: Any, keyframes_only: bool, threads: int | None,
                 fallback_after: float | None = None):
        self.container = container
        self.stream = container.streams.video[0]
        ctx = self.stream.codec_context
        self.keyframes_only = keyframes_only
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
        self.fallback_after = fallback_after
        self.fell_back = False
        self._last_key_time: float | None = None  # stream time of the newest keyframe packet
        self._first_packet_time: float | None = None
        self._packets = container.demux(self.stream)
        self._pending: list[Any] = []
        self._flushed = False
        self.decode_errors = 0  # packets the decoder rejected (skipped)
        self._bad_packets = 0  # ... in a row

    @property
    def decoder(self) -> str:
        return "pyav-keyframes" if self.keyframes_only else "pyav"

    def set_skip(self, skip: str) -> None:
        self.stream.codec_context.skip_frame = skip

    def _watch_keyframes(self, packet: Any) -> None:
        """Fall back to decoding every frame when keyframes stop coming (intra refresh)."""
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.time_base is None:
            return
        t = float(ts * packet.time_base)
        if packet.is_keyframe:
            self._last_key_time = t
            return
        if self._first_packet_time is None:
            self._first_packet_time = t
        since = self._last_key_time if self._last_key_time is not None else self._first_packet_time
        if t - since > self.fallback_after:
            self.keyframes_only = False
            self.fell_back = True
            self.set_skip("DEFAULT")

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
            if self.keyframes_only and self.fallback_after is not None:
                self._watch_keyframes(packet)
            try:
                self._pending.extend(packet.decode())
            except av.error.FFmpegError:
                # A damaged packet (lost or corrupted RTP data; FFmpeg reports it as invalid data,
                # or as ENOTSUP when corrupted header bits ask for a feature): the decoder recovers at the next
                # keyframe, so skip it instead of dropping the connection; only a long run of
                # rejected packets (a stream the decoder cannot read at all) is a failure.
                self.decode_errors += 1
                self._bad_packets += 1
                if self._bad_packets >= MAX_BAD_PACKETS:
                    raise
                continue
            self._bad_packets = 0
        return self._pending.pop(0)

    def release(self) -> None:
        try:
            self.container.close()
        except Exception:  # pragma: no cover - closing a broken container
            pass


class PyAVReader(CameraReader):
    """``CameraReader`` decoding with PyAV, keyframes only by default. See the module docstring."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        keyframes_only: bool = True,
        fallback_after: float | None = None,
        realtime: bool = True,
        on_frame: Callable[[Frame], None] | None = None,
        successor_below: float | None = None,
        **kwargs: Any,
    ) -> None:
        """``realtime=False``: files are decoded as fast as possible instead of at their frame
        rate (offline analysis, tests). ``on_frame(frame)`` is called from the reader thread
        for every delivered frame (must not block). ``successor_below``: decode a keyframe's
        successor only if the keyframe's largest 16x16-cell grey difference to the previous
        keyframe is below this (the frozen check's ``change_threshold``); otherwise
        ``Frame.motion`` is that difference (None: always decode the successor)."""
        if av is None:  # pragma: no cover
            raise RuntimeError("PyAV (package 'av') is not installed")
        super().__init__(camera_id, url, **kwargs)
        self.keyframes_only = keyframes_only
        self.fallback_after = fallback_after
        self.realtime = realtime
        self._on_frame = on_frame
        self.successor_below = successor_below
        #: Successor frames decoded / skipped because the keyframe already showed a change.
        self.successors = 0
        self.successors_skipped = 0
        #: Set once the reader fell back from keyframes-only to every frame (``fallback_after``).
        self.fell_back = False
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
            return _PyAVCapture(container, self.keyframes_only, self.decode_threads, self.fallback_after)
        except Exception:
            container.close()
            raise

    @staticmethod
    def _describe(cap: Any, image: np.ndarray) -> dict[str, Any]:
        return {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "fps": round(cap.fps, 3) if 0 < cap.fps <= 1000 else None,
            "decoder": cap.decoder,
        }

    def _pump(self, cap: Any, clock: Any, motion: Any, connected_at: float) -> tuple[str, str | None]:
        pace = not self.is_network and self.realtime
        delivered = bad = 0
        backoff_reset = False
        has_motion = motion is not None and "motion" in getattr(Frame, "__dataclass_fields__", {})
        period = 1.0 / cap.fps if 0 < cap.fps <= 1000 else 0.04
        key: tuple[Any, np.ndarray, np.ndarray, float] | None = None  # keyframe waiting for its successor
        previous_thumb: np.ndarray | None = None  # luma thumbnail of the previous keyframe
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
            if cap.fell_back and not self.fell_back:
                self.fell_back, self.keyframes_only, key = True, False, None
                self._log.info(
                    "decode_fallback",
                    url=self.masked_url,
                    reason=f"no keyframe for {cap.fallback_after:g} s of stream",
                    decoder=cap.decoder,
                )
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
            extra: dict[str, Any] = {}
            if key is not None:
                # The keyframe's successor: measure, then deliver the keyframe.
                cap.set_skip("NONKEY")
                (frame, image, a, scale), successor = key, frame
                key = None
                try:
                    b, _ = luma_thumbnail(successor)
                    extra["motion"] = mean_difference(a, b) * scale
                except (av.error.FFmpegError, ValueError):
                    pass  # a damaged successor: deliver the keyframe without a motion figure
                self.successors += 1
            else:
                image = frame_to_bgr(frame)
                if image is None:
                    bad += 1
                    if bad >= MAX_BAD_FRAMES:
                        return "error", f"{bad} unusable frames in a row"
                    continue
                bad = 0
                if cap.keyframes_only and has_motion:
                    # A keyframe: keep it, decode exactly one more frame (its successor) for
                    # motion - unless it already differs from the previous keyframe by a real change.
                    try:
                        thumb, scale = luma_thumbnail(frame)
                    except (av.error.FFmpegError, ValueError):
                        continue  # same reason as frame_to_bgr: an unconvertible damaged frame
                    previous_key, previous_thumb = previous_thumb, thumb
                    change = 0.0
                    if self.successor_below is not None and previous_key is not None:
                        change = max_cell_difference(thumb, previous_key) * scale  # inf: new resolution
                    if self.successor_below is None or not self.successor_below <= change < float("inf"):
                        key = (frame, image, thumb, scale)
                        cap.set_skip("DEFAULT")
                        continue
                    self.successors_skipped += 1
                    extra["motion"] = change  # the picture moved: certainly not still
                elif has_motion:
                    extra["motion"] = motion.update(image)
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
            out = Frame(self.camera_id, image, self._seq, time.time(), now_mono, **extra)
            with self._lock:
                self._frame = out
                self._frames += 1
                self._last_frame_mono = now_mono
                self._last_error = None
            if self._on_frame is not None:
                self._on_frame(out)
            if not backoff_reset and (not self.is_network or now_mono - connected_at >= self.stable_after):
                self.backoff.reset()
                backoff_reset = True
        return "stopped", None
