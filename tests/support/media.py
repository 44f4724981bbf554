"""Real encoded test media and a real RTSP server, as a pytest plugin.

Clips
-----
``make_clip(path, seconds=..., ...)`` encodes an H.264 (libx264, yuv420p, mp4) clip with the
ffmpeg CLI. Content comes from the real footage and photographs in ``shared/data/train`` when
that folder is beside the repo (falls back to ffmpeg's lavfi test sources otherwise):

* ``content="real"``: ``videos/kivy_cityCC0.mpg`` (night city time-lapse, moving camera) looped
  and scaled/cropped to ``size``;
* ``content="pan"``: a still photograph with a slow pan, so every second differs;
* ``content="still"``: a still photograph, nothing moves (combine with ``noise`` and/or
  ``clock_overlay`` for the live-but-static negative cases of frozen detection);
* ``content="testsrc"``: ffmpeg ``testsrc2`` (moving synthetic pattern).

``noise`` adds temporal sensor-like noise (``noise=alls=N:allf=t``), ``clock_overlay`` burns in a
CCTV-style ``YYYY-MM-DD HH:MM:SS`` clock that ticks once per second (``drawtext``; a moving box
when ffmpeg lacks drawtext), and ``freeze=(a, b)`` replaces every frame from ``a`` s to ``b`` s
by the frame at ``a`` s (ffmpeg ``freezeframes``), overlay and noise included, as a stuck
encoder would; the stream stays a normal constant-rate stream throughout. ``loss_screen=(a, b)``
shows a DVR's video-loss screen (flat blue, a white caption bar) from ``a`` s to ``b`` s, the
clock (if any) ticking on top. GOPs are fixed
(``-g gop -sc_threshold 0``) and there are no B-frames, like typical CCTV encoders.

Fixtures: ``clip_factory(**kwargs) -> Path`` (cached per session by parameters; set
``STREAMWATCH_MEDIA_CACHE`` to a folder to keep clips across sessions) and
``rtsp_server_factory(clip, **kwargs) -> RtspServer`` (killed at teardown).

RTSP
----
``ffmpeg ... -f rtsp -rtsp_flags listen`` cannot serve: in ffmpeg 5.1 ``listen`` is a flag of the
RTSP *demuxer* (it receives an ANNOUNCE push), the RTSP muxer only pushes to a server. Debian has
no mediamtx, and gst-rtsp-server would need GStreamer plugins plus the system Python's ``gi``.
So the tests use the small RTSP server in this file (``python tests/support/media.py
rtsp-serve ...``), run as its own process so that killing it (SIGKILL) is a real, abrupt
server failure: it answers OPTIONS/DESCRIBE/SETUP/PLAY/GET_PARAMETER/TEARDOWN, optionally
demands Basic authentication, and streams the clip's H.264 (demuxed with PyAV, no re-encoding)
as RTP over the RTSP TCP connection (interleaved, RFC 2326 10.12; FU-A fragmentation, RFC 6184)
in real time, looping, to any number of clients. UDP transport is refused with 461, which
FFmpeg answers by falling back to TCP. Faults (issue 6): ``mode="silent"`` answers up to PLAY
but never sends a packet, ``mode="mute"`` accepts the TCP connection and never answers,
``stall_after=S`` stops the media after S seconds with the connection left open, ``corrupt=p``
damages a share p of the RTP packets, and a list of clips of different sizes is a mid-stream
resolution change.

Limits: H.264 only; RTP over the RTSP connection only (no UDP, no multicast, no RTCP sender
reports, so clients get no wall-clock mapping); Basic authentication only (no Digest); one
media track; pacing by the clip's timestamps, each client from the start of the clip.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parents[2]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"
REAL_VIDEO = SHARED_TRAIN / "videos" / "kivy_cityCC0.mpg"
REAL_STILL = SHARED_TRAIN / "stills" / "opencv_home.jpg"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
# 2023-11-14 22:13:20 UTC: the burned-in clock starts here.
CLOCK_EPOCH = 1_700_000_000


class MediaError(RuntimeError):
    pass


def ffmpeg_bin() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg not found on PATH (Debian: apt-get install ffmpeg)")
    return exe


_FILTERS: set[str] | None = None


def ffmpeg_has_filter(name: str) -> bool:
    global _FILTERS
    if _FILTERS is None:
        out = subprocess.run(
            [ffmpeg_bin(), "-hide_banner", "-filters"], capture_output=True, text=True, check=False
        ).stdout
        _FILTERS = {line.split()[1] for line in out.splitlines() if len(line.split()) > 2 and line.startswith(" ")}
    return name in _FILTERS


def _font() -> str | None:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


#: Clips of live scenes that barely change (``make_clip`` keyword arguments by name): the cases
#: the frozen check must NOT call frozen, shared by the full-decode and keyframe tests.
LIVE_STATIC_SCENES: dict[str, dict] = {
    "sensor-noise": dict(content="still", noise=6),
    "weak-noise": dict(content="still", noise=3),
    "clock-overlay": dict(content="still", clock_overlay=True),
    "slow-pan": dict(content="pan"),
    "real-footage": dict(content="real"),
}


def make_clip(
    path: Path | str,
    *,
    seconds: float,
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    gop: int = 50,
    freeze: tuple[float, float] | None = None,
    content: str = "real",
    noise: int = 0,
    clock_overlay: bool = False,
    bitrate: str | None = None,
    loss_screen: tuple[float, float] | None = None,
) -> Path:
    """Encode an H.264 mp4 clip with ffmpeg and return its path. See the module docstring."""
    path = Path(path)
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("size must be even for yuv420p")
    if content not in ("real", "pan", "still", "testsrc"):
        raise ValueError(f"unknown content {content!r}")
    have_shared = REAL_VIDEO.is_file() and REAL_STILL.is_file()
    fit = f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},setsar=1"
    inputs: list[str]
    if content == "real" and have_shared:
        inputs = ["-stream_loop", "-1", "-i", str(REAL_VIDEO)]
        chain = [f"fps={fps}", fit]
    elif content == "pan" and have_shared:
        # Scale the photo 30 % larger than the frame and slide a frame-sized window over it.
        inputs = ["-loop", "1", "-framerate", str(fps), "-i", str(REAL_STILL)]
        big_w, big_h = int(width * 1.3) // 2 * 2, int(height * 1.3) // 2 * 2
        chain = [
            f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase",
            f"crop={width}:{height}:x='(iw-ow)/2*(1+sin(t/3))':y='(ih-oh)/2*(1+cos(t/4))'",
            "setsar=1",
        ]
    elif content == "still" and have_shared:
        inputs = ["-loop", "1", "-framerate", str(fps), "-i", str(REAL_STILL)]
        chain = [fit]
    elif content == "still":
        inputs = ["-f", "lavfi", "-i", f"smptehdbars=size={width}x{height}:rate={fps}"]
        chain = ["setsar=1"]
    else:  # testsrc, or real/pan without shared/
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
        chain = ["setsar=1"]
        if content != "testsrc" and noise == 0:
            chain.append("noise=alls=6:allf=t")  # a little texture so it is not synthetic-clean
    if loss_screen is not None:
        # A DVR's video-loss screen from start to end: flat DVR blue with a white caption bar
        # (drawn under the OSD clock, which such a recorder keeps ticking).
        on = f"enable='between(t,{loss_screen[0]},{loss_screen[1]})'"
        chain += [f"drawbox=x=0:y=0:w=iw:h=ih:color=0x10289F:t=fill:{on}",
                  f"drawbox=x=iw*0.4:y=ih*0.46:w=iw*0.2:h=ih*0.05:color=white:t=fill:{on}"]
    chain.append("format=yuv420p")
    if noise:
        chain.append(f"noise=alls={int(noise)}:allf=t")
    if clock_overlay:
        font = _font()
        if ffmpeg_has_filter("drawtext") and font:
            # Ticks once per second like a camera's OSD clock. Escaping: '\\\:' in the graph
            # reaches strftime as ':'.
            text = f"%{{pts\\:gmtime\\:{CLOCK_EPOCH}\\:%Y-%m-%d %H\\\\\\:%M\\\\\\:%S}}"
            fontsize = max(12, height // 18)
            chain.append(
                f"drawtext=fontfile={font}:text='{text}':x={fontsize // 2}:y={fontsize // 2}"
                f":fontsize={fontsize}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4"
            )
        else:
            # No drawtext: a small box that jumps once per second stands in for the clock.
            bw = max(8, width // 40)
            chain.append(
                f"drawbox=x='{bw}+mod(floor(t),10)*{bw * 2}':y={bw}:w={bw}:h={bw}:color=white:t=fill"
            )
    graph = f"[0:v]{','.join(chain)}"
    if freeze is not None:
        start, end = freeze
        if not 0 <= start < end:
            raise ValueError("freeze must be (start, end) with 0 <= start < end")
        first, last = int(round(start * fps)), int(round(end * fps)) - 1
        graph += f",split[a][b];[a][b]freezeframes=first={first}:last={last}:replace={first}"
    graph += "[v]"
    cmd = [
        ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        *inputs,
        "-filter_complex", graph, "-map", "[v]",
        "-t", f"{seconds}", "-r", str(fps),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
    ]  # fmt: skip
    cmd += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else ["-crf", "23"]
    cmd += ["-movflags", "+faststart", "-an", str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    cmd[-1] = str(tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        raise MediaError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}\ncommand: {cmd}")
    tmp.replace(path)
    return path


def clip_key(**params: Any) -> str:
    blob = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# RTSP server (runs in its own process: python tests/support/media.py rtsp-serve ...)
# ----------------------------------------------------------------------------------------------

RTP_PAYLOAD_TYPE = 96
#: normal: stream; silent: answer RTSP up to PLAY, send no media; mute: accept TCP, answer nothing.
MODES = ("normal", "silent", "mute")
RTP_MAX_PAYLOAD = 1400


def free_port() -> int:
    """Same policy as the broker's: below the ephemeral range, so a restart on the port works."""
    from tests.support.broker import free_port as below_ephemeral

    return below_ephemeral()


def _parse_avcc(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [SPS..., PPS...]) from an avcC box (or Annex-B extradata)."""
    if extradata[:4] == b"\x00\x00\x00\x01" or extradata[:3] == b"\x00\x00\x01":
        return 0, [n for n in _split_annexb(extradata) if n]
    length_size = (extradata[4] & 0x03) + 1
    nals: list[bytes] = []
    pos = 5
    for count_mask in (0x1F, 0xFF):
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            (n,) = struct.unpack(">H", extradata[pos : pos + 2])
            nals.append(extradata[pos + 2 : pos + 2 + n])
            pos += 2 + n
    return length_size, nals


def _split_annexb(data: bytes) -> list[bytes]:
    out, i, start = [], 0, -1
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if start >= 0:
            end = j - 1 if j > 0 and data[j - 1] == 0 else j
            out.append(data[start:end])
        start = i = j + 3
    if start >= 0:
        out.append(data[start:])
    return out


def _split_nals(payload: bytes, length_size: int) -> list[bytes]:
    if length_size == 0:
        return _split_annexb(payload)
    nals, pos = [], 0
    while pos + length_size <= len(payload):
        n = int.from_bytes(payload[pos : pos + length_size], "big")
        pos += length_size
        nals.append(payload[pos : pos + n])
        pos += n
    return nals


class _ClipInfo:
    def __init__(self, clip: str):
        import av  # PyAV: only the server process needs it

        with av.open(clip) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                raise MediaError(f"{clip}: RTSP test server streams H.264 only, not {stream.codec_context.name}")
            self.length_size, self.parameter_sets = _parse_avcc(bytes(stream.codec_context.extradata))
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.base_rate or 25
            self.frame_duration = 1.0 / float(rate)


class _ClipSource:
    """Access units of a playlist of H.264 clips as (seconds, [NAL...], parameter sets).

    Clips play one after another (looping over the list) on one continuous timeline; a clip of
    another size makes a mid-stream resolution change, with its SPS/PPS sent in-band.
    """

    def __init__(self, clips: list[str], loop: bool):
        import av

        self._av = av
        self.clips = list(clips)
        self.loop = loop
        self.infos = [_ClipInfo(c) for c in self.clips]
        first = self.infos[0]
        self.parameter_sets, self.width, self.height = first.parameter_sets, first.width, first.height

    def sdp_fmtp(self) -> str:
        sps = next((n for n in self.parameter_sets if n and n[0] & 0x1F == 7), b"")
        profile = sps[1:4].hex().upper() if len(sps) >= 4 else "42E01F"
        sprops = ",".join(base64.b64encode(n).decode() for n in self.parameter_sets)
        return f"packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sprops}"

    def __iter__(self) -> Iterator[tuple[float, list[bytes], list[bytes]]]:
        offset = 0.0
        while True:
            for clip, info in zip(self.clips, self.infos):
                last = 0.0
                with self._av.open(clip) as container:
                    stream = container.streams.video[0]
                    base = None
                    for packet in container.demux(stream):
                        if packet.size == 0 or packet.pts is None:
                            continue
                        t = float(packet.pts * stream.time_base)
                        base = t if base is None else base
                        last = max(last, t - base)
                        yield offset + t - base, _split_nals(bytes(packet), info.length_size), info.parameter_sets
                offset += last + info.frame_duration
            if not self.loop:
                return


class _RtspSession(threading.Thread):
    def __init__(self, server: "_RtspServe", sock: socket.socket, peer: Any):
        super().__init__(daemon=True, name=f"rtsp-{peer}")
        self.server = server
        self.sock = sock
        self.session_id = secrets.token_hex(8)
        self.write_lock = threading.Lock()
        self.playing = threading.Event()
        self.closed = threading.Event()
        self.channel = 0

    # -- control connection -------------------------------------------------------------
    def run(self) -> None:
        buf = b""
        try:
            while not self.closed.is_set():
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while buf:
                    if buf[0] == 0x24:  # interleaved RTCP from the client: skip
                        if len(buf) < 4:
                            break
                        n = struct.unpack(">H", buf[2:4])[0]
                        if len(buf) < 4 + n:
                            break
                        buf = buf[4 + n :]
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end].decode("latin-1")
                    headers = {}
                    lines = head.split("\r\n")
                    for line in lines[1:]:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                    body_len = int(headers.get("content-length", "0") or 0)
                    if len(buf) < end + 4 + body_len:
                        break
                    buf = buf[end + 4 + body_len :]
                    parts = lines[0].split(" ")
                    if len(parts) < 3:
                        self.reply(headers, 400, "Bad Request")
                        continue
                    self.handle(parts[0].upper(), parts[1], headers)
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def reply(self, req: dict[str, str], code: int, reason: str, extra: dict[str, str] | None = None,
              body: bytes = b"") -> None:  # fmt: skip
        lines = [f"RTSP/1.0 {code} {reason}", f"CSeq: {req.get('cseq', '0')}", "Server: streamwatch-test-rtsp"]
        for key, value in (extra or {}).items():
            lines.append(f"{key}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        msg = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        with self.write_lock:
            self.sock.sendall(msg)

    def authorised(self, headers: dict[str, str]) -> bool:
        if self.server.credentials is None:
            return True
        want = "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
        return headers.get("authorization", "") == want

    def handle(self, method: str, url: str, headers: dict[str, str]) -> None:
        if method == "OPTIONS":
            self.reply(headers, 200, "OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"})
            return
        if method in ("DESCRIBE", "SETUP", "PLAY") and not self.authorised(headers):
            self.reply(headers, 401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="streamwatch-test"'})
            return
        if method == "DESCRIBE":
            path = url.split("://", 1)[-1].split("/", 1)[-1] if "/" in url.split("://", 1)[-1] else ""
            if path.rstrip("/") != self.server.path:
                self.reply(headers, 404, "Not Found")
                return
            src = self.server.source
            sdp = (
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=streamwatch test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                "a=control:*\r\n"
                f"m=video 0 RTP/AVP {RTP_PAYLOAD_TYPE}\r\n"
                f"a=rtpmap:{RTP_PAYLOAD_TYPE} H264/90000\r\n"
                f"a=fmtp:{RTP_PAYLOAD_TYPE} {src.sdp_fmtp()}\r\n"
                f"a=framesize:{RTP_PAYLOAD_TYPE} {src.width}-{src.height}\r\n"
                "a=control:trackID=0\r\n"
            ).encode()
            base = url if url.endswith("/") else url + "/"
            self.reply(headers, 200, "OK", {"Content-Base": base, "Content-Type": "application/sdp"}, sdp)
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "RTP/AVP/TCP" not in transport.upper():
                self.reply(headers, 461, "Unsupported Transport")
                return
            for part in transport.split(";"):
                if part.strip().startswith("interleaved="):
                    self.channel = int(part.split("=")[1].split("-")[0])
            self.reply(headers, 200, "OK", {
                "Transport": f"RTP/AVP/TCP;unicast;interleaved={self.channel}-{self.channel + 1}",
                "Session": f"{self.session_id};timeout=60",
            })  # fmt: skip
        elif method == "PLAY":
            self.reply(headers, 200, "OK", {"Session": self.session_id, "Range": "npt=0.000-"})
            if not self.playing.is_set():
                self.playing.set()
                threading.Thread(target=self.stream, daemon=True, name="rtp").start()
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            self.reply(headers, 200, "OK", {"Session": self.session_id})
        elif method == "TEARDOWN":
            self.reply(headers, 200, "OK", {"Session": self.session_id})
            self.close()
        else:
            self.reply(headers, 405, "Method Not Allowed")

    # -- media -----------------------------------------------------------------------------
    def stream(self) -> None:
        server = self.server
        if server.mode == "silent":
            self.closed.wait()
            return
        rng = random.Random()
        seq = rng.randrange(65536)
        ts0 = rng.randrange(1 << 31)
        ssrc = rng.randrange(1 << 32)
        start = time.monotonic()
        try:
            for t, nals, params in _ClipSource(server.clips, server.loop):
                if server.stall_after is not None and t >= server.stall_after:
                    self.closed.wait()  # connection stays open, media stops: a hung encoder
                    return
                delay = start + t - time.monotonic()
                if delay > 0 and self.closed.wait(delay):
                    return
                if self.closed.is_set():
                    return
                types = {n[0] & 0x1F for n in nals if n}
                if 5 in types and 7 not in types:
                    nals = list(params) + nals  # SPS/PPS in-band before every IDR
                nals = [n for n in nals if n and n[0] & 0x1F != 9]  # drop access unit delimiters
                ts = (ts0 + int(round(t * 90000))) & 0xFFFFFFFF
                out = bytearray()
                for i, nal in enumerate(nals):
                    last_nal = i == len(nals) - 1
                    if len(nal) <= RTP_MAX_PAYLOAD:
                        chunks = [nal]
                    else:
                        ind = (nal[0] & 0xE0) | 28
                        body = nal[1:]
                        pieces = [body[k : k + RTP_MAX_PAYLOAD] for k in range(0, len(body), RTP_MAX_PAYLOAD)]
                        chunks = []
                        for k, piece in enumerate(pieces):
                            fu = (nal[0] & 0x1F) | (0x80 if k == 0 else 0) | (0x40 if k == len(pieces) - 1 else 0)
                            chunks.append(bytes([ind, fu]) + piece)
                    for k, chunk in enumerate(chunks):
                        if server.corrupt and len(chunk) > 8 and rng.random() < server.corrupt:
                            damaged = bytearray(chunk)
                            for _ in range(1 + len(chunk) // 200):  # flip bytes past the NAL/FU headers
                                damaged[rng.randrange(2, len(chunk))] ^= 0xFF
                            chunk = bytes(damaged)
                        marker = 0x80 if last_nal and k == len(chunks) - 1 else 0
                        rtp = struct.pack(">BBHII", 0x80, marker | RTP_PAYLOAD_TYPE, seq, ts, ssrc) + chunk
                        seq = (seq + 1) & 0xFFFF
                        out += struct.pack(">cBH", b"$", self.channel, len(rtp)) + rtp
                with self.write_lock:
                    self.sock.sendall(out)
        except OSError:
            pass
        finally:
            self.close()


class _RtspServe:
    def __init__(self, clips: list[str], host: str, port: int, path: str, loop: bool, mode: str,
                 credentials: str | None, stall_after: float | None = None, corrupt: float = 0.0):  # fmt: skip
        self.clips, self.host, self.port, self.path = clips, host, port, path.strip("/")
        self.loop, self.mode, self.credentials = loop, mode, credentials
        self.stall_after, self.corrupt = stall_after, corrupt
        self.source = _ClipSource(clips, loop)

    def serve_forever(self, ready: Callable[[], None]) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        ready()
        held: list[socket.socket] = []
        while True:
            sock, peer = listener.accept()
            if self.mode == "mute":
                held.append(sock)  # accept the TCP connection, never say a word
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _RtspSession(self, sock, peer).start()


def _serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="media.py rtsp-serve", description="Serve H.264 clips over RTSP/TCP.")
    parser.add_argument("clips", nargs="+", help="played in sequence (different sizes: a resolution change)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="stream")
    parser.add_argument("--no-loop", action="store_true")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--stall-after", type=float, default=None, help="stop sending media after S seconds")
    parser.add_argument("--corrupt", type=float, default=0.0, help="share of RTP packets to damage")
    args = parser.parse_args(argv)
    # Credentials come through the environment, never argv (visible in ps).
    credentials = os.environ.get("STREAMWATCH_TEST_RTSP_AUTH") or None
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = _RtspServe(args.clips, args.host, args.port, args.path, not args.no_loop, args.mode, credentials,
                        args.stall_after, args.corrupt)  # fmt: skip

    def ready() -> None:
        print(f"listening rtsp://{args.host}:{args.port}/{server.path}", flush=True)

    server.serve_forever(ready)
    return 0


class RtspServer:
    """A real RTSP server process on loopback; killable and restartable on the same port.

    ``clip`` is one H.264 mp4 or a list played in sequence (clips of different sizes give a
    mid-stream resolution change). ``url`` includes ``user:password@`` when credentials are set
    (the server then demands Basic authentication). Faults for reliability tests:
    ``mode="silent"`` (RTSP answered, no media), ``mode="mute"`` (TCP accepted, nothing
    answered), ``stall_after=S`` (media stops after S s, connection stays open),
    ``corrupt=p`` (share of RTP packets with damaged payload bytes).
    """

    def __init__(self, clip: Path | str | Sequence[Path | str], *, port: int | None = None, path: str = "stream",
                 user: str | None = None, password: str | None = None, mode: str = "normal",
                 loop: bool = True, host: str = "127.0.0.1", stall_after: float | None = None,
                 corrupt: float = 0.0):  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.clips = [Path(clip)] if isinstance(clip, (str, Path)) else [Path(c) for c in clip]
        self.clip = self.clips[0]
        self.host = host
        self.port = port or free_port()
        self.path = path.strip("/")
        self.user, self.password = user, password
        self.mode = mode
        self.loop = loop
        self.stall_after = stall_after
        self.corrupt = corrupt
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: Any = None
        self.starts = 0

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"rtsp://{auth}{self.host}:{self.port}/{self.path}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> "RtspServer":
        """Start the server process (on the same port as before) and wait until it listens."""
        if self.running:
            return self
        env = dict(os.environ)
        env.pop("STREAMWATCH_TEST_RTSP_AUTH", None)
        if self.user is not None:
            env["STREAMWATCH_TEST_RTSP_AUTH"] = f"{self.user}:{self.password or ''}"
        cmd = [sys.executable, str(Path(__file__).resolve()), "rtsp-serve", *map(str, self.clips),
               "--host", self.host, "--port", str(self.port), "--path", self.path, "--mode", self.mode]  # fmt: skip
        if not self.loop:
            cmd.append("--no-loop")
        if self.stall_after is not None:
            cmd += ["--stall-after", str(self.stall_after)]
        if self.corrupt:
            cmd += ["--corrupt", str(self.corrupt)]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill and block
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            assert self.proc.stdout is not None
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=0.1):
                    line = self.proc.stdout.readline()
                    if line.startswith("listening"):
                        return self
                    if not line and self.proc.poll() is not None:
                        break
        err = self.stderr_text()[-2000:]
        self.kill()
        raise MediaError(f"RTSP test server did not start on port {self.port}: {err}")

    def stderr_text(self) -> str:
        """What the server process wrote to stderr (tracebacks, if any)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def kill(self) -> None:
        """SIGKILL: connections drop abruptly, as when a camera or its switch dies."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.proc = None

    stop = kill

    def restart(self, timeout: float = 10.0) -> "RtspServer":
        self.kill()
        return self.start(timeout)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


# ----------------------------------------------------------------------------------------------
# pytest fixtures (only when loaded as a plugin)
# ----------------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - server subprocess without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
        cache = os.environ.get("STREAMWATCH_MEDIA_CACHE")
        if cache:
            path = Path(cache)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return tmp_path_factory.mktemp("media")

    @pytest.fixture(scope="session")
    def clip_factory(media_dir: Path) -> Callable[..., Path]:
        """``clip_factory(seconds=10, content="real", ...) -> Path``, encoded once per parameters."""
        lock = threading.Lock()

        def factory(**params: Any) -> Path:
            params.setdefault("seconds", 10)
            key = clip_key(shared=SHARED_TRAIN.is_dir(), **params)
            path = media_dir / f"clip-{key}.mp4"
            with lock:
                if not path.is_file():
                    make_clip(path, **params)
            return path

        return factory

    @pytest.fixture
    def rtsp_server_factory() -> Iterator[Callable[..., RtspServer]]:
        """``rtsp_server_factory(clip, **kwargs) -> RtspServer`` (started); all killed at teardown."""
        servers: list[RtspServer] = []

        def factory(clip: Path | str, **kwargs: Any) -> RtspServer:
            server = RtspServer(clip, **kwargs)
            servers.append(server)
            return server.start()

        yield factory
        for server in servers:
            server.kill()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "rtsp-serve":
        sys.exit(_serve_main(sys.argv[2:]))
    print("usage: media.py rtsp-serve CLIP [CLIP...] --port N [--path P] [--mode normal|silent|mute]"
          " [--stall-after S] [--corrupt P]", file=sys.stderr)
    sys.exit(2)
