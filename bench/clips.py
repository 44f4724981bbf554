"""1080p benchmark cameras: real footage scaled up, H.264 25 fps, keyframe every 2 s, 4 Mbit/s.

Encoded once with the ffmpeg CLI into a cache folder (``$STREAMWATCH_BENCH_CACHE``, else
``/work/scratch/bench/clips`` where ``/work/scratch`` exists, else
``~/.cache/streamwatch-bench/clips``), never into the repository:

* ``normal``: ``videos/kivy_cityCC0.mpg`` (a night-city time-lapse with a moving camera, 720x405)
  looped, scaled up to 1920x1080, 40 s;
* ``mono``: the same, but colourless (``hue=s=0``) from ``MONO_ONSET`` s to the end (40 s): a
  camera that turns monochrome at a known time of every loop (the classifier's ``monochrome``);
* ``frozen``: the same, but the picture held from ``FREEZE[0]`` to ``FREEZE[1]`` s (a stuck
  camera, ffmpeg ``freezeframes``), 50 s, encoded as capped VBR (``-crf 23 -maxrate 4M``, the
  usual CCTV "VBR" mode): under strict CBR x264 keeps spending the spare bits on refining the
  held picture, so consecutive frames of a frozen feed differ by 0.01-0.09 grey levels and the
  frozen check's noise floor (0.01) does not see it with either decoder - see
  docs/performance.md, "frozen under CBR".

    python bench/clips.py            # make the clips (~1-3 min on two cores), print their paths
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_VIDEO = REPO.parent / "shared" / "data" / "train" / "videos" / "kivy_cityCC0.mpg"
_SCRATCH = Path("/work/scratch")
DEFAULT_CACHE = Path(os.environ.get("STREAMWATCH_BENCH_CACHE") or (
    _SCRATCH / "bench" / "clips" if _SCRATCH.is_dir() else Path.home() / ".cache" / "streamwatch-bench" / "clips"))

SIZE = (1920, 1080)
FPS = 25
GOP = 50  # keyframe every 2 s
BITRATE = "4M"
MONO_ONSET = 20.0
MONO_SECONDS = 40.0
FREEZE = (15.0, 45.0)
FROZEN_SECONDS = 50.0
NORMAL_SECONDS = 40.0


def _source_args() -> list[str]:
    if REAL_VIDEO.is_file():
        return ["-stream_loop", "-1", "-i", str(REAL_VIDEO)]
    return ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}"]  # no shared footage: synthetic


def _encode(path: Path, seconds: float, extra_chain: str = "", freeze: tuple[float, float] | None = None,
            size: tuple[int, int] = SIZE, vbr: bool = False) -> Path:
    w, h = size
    chain = f"fps={FPS},scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1,format=yuv420p"
    if extra_chain:
        chain += "," + extra_chain
    graph = f"[0:v]{chain}"
    if freeze is not None:
        first, last = int(freeze[0] * FPS), int(freeze[1] * FPS) - 1
        graph += f",split[a][b];[a][b]freezeframes=first={first}:last={last}:replace={first}"
    graph += "[v]"
    tmp = path.with_name(path.name + ".part.mp4")
    cmd = [
        shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        *_source_args(), "-filter_complex", graph, "-map", "[v]", "-t", f"{seconds}", "-r", str(FPS),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", "-bf", "0",
        *(["-crf", "23", "-maxrate", BITRATE, "-bufsize", "8M"] if vbr
          else ["-b:v", BITRATE, "-maxrate", BITRATE, "-bufsize", BITRATE]),
        "-movflags", "+faststart", "-an", str(tmp),
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr[-2000:]}\n{cmd}")
    tmp.replace(path)
    return path


def ensure_clips(cache: Path = DEFAULT_CACHE, size: tuple[int, int] = SIZE) -> dict[str, Path]:
    """Paths of the three benchmark clips, encoding any that are missing (``size``: CI uses smaller)."""
    tag = f"{size[0]}x{size[1]}-{FPS}fps-g{GOP}-{BITRATE}"
    wanted = {
        "normal": (cache / f"normal-{tag}.mp4", dict(seconds=NORMAL_SECONDS)),
        "mono": (cache / f"mono{MONO_ONSET:g}-{tag}.mp4",
                 dict(seconds=MONO_SECONDS, extra_chain=f"hue=s=0:enable='gte(t,{MONO_ONSET:g})'")),
        "frozen": (cache / f"frozen{FREEZE[0]:g}-{FREEZE[1]:g}-{tag}-vbr.mp4",
                   dict(seconds=FROZEN_SECONDS, freeze=FREEZE, vbr=True)),
    }  # fmt: skip
    out = {}
    for name, (path, kwargs) in wanted.items():
        if not path.is_file():
            _encode(path, size=size, **kwargs)
        out[name] = path
    return out


if __name__ == "__main__":
    for name, path in ensure_clips().items():
        print(name, path)
    sys.exit(0)
