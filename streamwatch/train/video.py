"""Faults seen through a video encoder: degraded clips, H.264-encoded, decoded, sampled.

``dataset build`` makes JPEG stills. A camera feed differs: the fault is applied to the sensor
picture, then a video encoder spends its bits (P-frames smooth noise and impulses away,
macroblocks quantise a cast or a blur, a colourless picture comes back with a decoder's tint)
and the daemon samples decoded frames. This module plays that chain for the source files of
one split of a built dataset:

1. a scene: a still picture panned slowly (an encoder needs motion to behave as on a live
   feed) or a video as decoded (looped), at most ``max_width`` px wide;
2. per scene and class, one clip: the degradation of :mod:`streamwatch.train.degrade` with its
   parameters drawn once per clip (a camera's cast or blur does not change every frame) and its
   noise drawn fresh per frame, on top of a light sensor noise (sigma 1.5) on every clip; a
   colourless source only makes the ``monochrome`` clip (``dataset build`` uses it so);
3. encoded with the ffmpeg CLI (libx264, capped VBR ``-crf C -maxrate 2M``, keyframe every
   2 s, 25 fps - the usual CCTV setting), decoded with OpenCV, every ``every``-th frame kept.

Used by ``streamwatch dataset video`` (decoded frames as JPEG quality 95 under
``OUT/<class>/``, to fit the fusion on) and by ``bench/field.py`` (classified directly).
Deterministic by seed; needs the ``ffmpeg`` binary.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.checks.classical import neutralise_decoder_tint
from streamwatch.train import degrade as dg
from streamwatch.train.dataset import read_video_frames

#: Bump when the clip recipe changes (clip caches are keyed by it).
CLIP_VERSION = 2  # 2: overexposure blows areas to white (degrade.overexpose)
FPS = 25
GOP = 50
SENSOR_NOISE = 1.5


@dataclass(frozen=True)
class ClipSpec:
    """One clip: which scene, which fault, how it is drawn and encoded."""

    scene: Path
    label: str
    seed: int
    seconds: float = 6.0
    crf: int = 23
    max_width: int = 1280
    #: A camera's on-screen display with a ticking clock (:func:`streamwatch.train.degrade.osd`):
    #: under the fault for a broken decode or impulses, on top of it for the others.
    osd: bool = False

    def cache_name(self) -> str:
        osd = "_osd" if self.osd else ""
        return f"v{CLIP_VERSION}_{self.scene.stem}_{self.label}_{self.seed}_{self.seconds:g}s_crf{self.crf}_w{self.max_width}{osd}.mp4"


def scene_frames(path: Path, seconds: float, max_width: int = 1280) -> list[np.ndarray]:
    """The scene's frames at FPS: a still panned slowly, a video as decoded (looped)."""
    n = max(1, int(round(seconds * FPS)))
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is not None:
        h, w = img.shape[:2]
        scale = min(1.0, max_width / (w * 0.9))
        img = cv2.resize(img, (max(2, int(w * scale)), max(2, int(h * scale))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        cw, ch = (int(w * 0.9) // 2) * 2, (int(h * 0.9) // 2) * 2
        frames = []
        for i in range(n):
            # At most a pixel per frame: a slow pan, like a PTZ drifting or wind on a pole.
            x, y = i * (w - cw) // n, i * (h - ch) // (2 * n)
            frames.append(img[y : y + ch, x : x + cw].copy())
        return frames
    frames = read_video_frames(path, n)
    if not frames:
        raise RuntimeError(f"cannot read {path}")
    h, w = frames[0].shape[:2]
    scale = min(1.0, max_width / w)
    size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
    return [cv2.resize(frames[i % len(frames)], size, interpolation=cv2.INTER_AREA) for i in range(n)]


def is_colourless(scene: Path) -> bool:
    """Whether the scene has no chroma (decoded pixels grey, up to a decoder's tint)."""
    first = scene_frames(scene, 1.0 / FPS)[0]
    return neutralise_decoder_tint(first) is not first


def _fault(label: str, seed: int):
    """(frame, frame rng, earlier frame) -> degraded frame; parameters fixed for the clip."""
    params = np.random.default_rng([seed, 1])
    if label == "gaussian_noise":
        sigma, colour = float(params.uniform(12.0, 30.0)), bool(params.random() < 0.5)
        return lambda img, rng, earlier: dg.gaussian_noise(img, rng, sigma=sigma, color=colour)
    if label == "salt_pepper":
        amount = float(params.uniform(0.01, 0.06))
        return lambda img, rng, earlier: dg.salt_pepper(img, rng, amount=amount)
    if label == "normal":
        return lambda img, rng, earlier: img
    # Cast, blur, exposure, chroma, broken decode: the same draw on every frame (same generator state).
    return lambda img, rng, earlier: dg.degrade(img, label, np.random.default_rng([seed, 2]), other=earlier)


def make_clip(spec: ClipSpec, out: Path) -> Path:
    """Degrade, add sensor noise and encode one clip with ffmpeg (libx264); returns ``out``
    (kept when it already exists: clips are deterministic by spec)."""
    if out.exists():
        return out
    frames = scene_frames(spec.scene, spec.seconds, spec.max_width)
    h, w = frames[0].shape[:2]
    fault = _fault(spec.label, spec.seed)
    rng = np.random.default_rng([spec.seed, 3])
    tmp = out.with_name(out.stem + ".part.mp4")
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(spec.crf),
           "-maxrate", "2M", "-bufsize", "4M", "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0",
           "-pix_fmt", "yuv420p", "-threads", "1", str(tmp)]
    on_top = spec.label in dg.OSD_AFTER_FAULT

    def draw_osd(img: np.ndarray, i: int) -> np.ndarray:
        if not spec.osd:
            return img
        return dg.osd(img, np.random.default_rng([spec.seed, 5]), white=spec.label == "monochrome", tick=i // FPS)

    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i, f in enumerate(frames):
            noisy = np.clip(f.astype(np.float32) + rng.normal(0.0, SENSOR_NOISE, f.shape), 0, 255).astype(np.uint8)
            j = max(0, i - FPS // 2)
            earlier = draw_osd(frames[j], j) if not on_top else frames[j]
            picture = fault(noisy if on_top else draw_osd(noisy, i), rng, earlier)
            proc.stdin.write(np.ascontiguousarray(draw_osd(picture, i) if on_top else picture).tobytes())
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed on {spec.scene} / {spec.label}")
    tmp.rename(out)
    return out


def sampled_frames(clip: Path, every: int) -> list[tuple[int, np.ndarray]]:
    """(frame index, decoded frame) for every ``every``-th frame of an encoded clip."""
    cap = cv2.VideoCapture(str(clip))
    out, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append((i, f))
        i += 1
    cap.release()
    return out


def split_scenes(data: Path, split: str) -> list[Path]:
    """The source files of one split of a dataset built by ``streamwatch dataset build``."""
    meta = json.loads((data / "dataset.json").read_text())
    src_dir = Path(meta["src_dir"])
    with open(data / "samples.csv", newline="") as fh:
        sources = sorted({row["source"] for row in csv.DictReader(fh) if row["split"] == split})
    return [src_dir / s for s in sources]


def clip_specs(scenes: list[Path], classes: tuple[str, ...], seed: int, seconds: float,
               crfs: tuple[int, ...] = (23,), max_width: int = 1280, osd: bool = False) -> list[ClipSpec]:
    """One clip per scene and class (colourless scenes: ``monochrome`` only); each clip's CRF is
    drawn from ``crfs`` so a set covers several bitrates."""
    specs = []
    for si, scene in enumerate(scenes):
        colourless = is_colourless(scene)
        for label in classes:
            if colourless and label != "monochrome":
                continue
            clip_seed = seed * 100_000 + si * 100 + CLASS_NAMES.index(label)
            # Drawn, not cycled by index: a CRF that followed the class would be a label the fusion could read.
            crf = crfs[int(np.random.default_rng([clip_seed, 4]).integers(len(crfs)))]
            specs.append(ClipSpec(scene, label, clip_seed, seconds, crf, max_width, osd))
    return specs


def make_clips(specs: list[ClipSpec], cache: Path, workers: int = 2) -> list[Path]:
    """Encode every clip (in parallel processes) into ``cache``; returns their paths."""
    cache.mkdir(parents=True, exist_ok=True)
    outs = [cache / s.cache_name() for s in specs]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(make_clip, specs, outs))


def build_video_samples(data: Path, split: str, out: Path, seed: int = 0, seconds: float = 2.0, every: int = 6,
                        crfs: tuple[int, ...] = (20, 23, 26, 29), max_width: int = 960, workers: int = 2) -> dict:
    """Write decoded frames of the split's fault clips as ``out/<class>/*.jpg`` (quality 95).

    Returns a summary (also written to ``out/video_samples.json``)."""
    specs = clip_specs(split_scenes(data, split), CLASS_NAMES, seed, seconds, crfs, max_width)
    clips = make_clips(specs, out / ".clips", workers)
    counts = {c: 0 for c in CLASS_NAMES}
    for ci, (spec, clip) in enumerate(zip(specs, clips)):
        folder = out / spec.label
        folder.mkdir(parents=True, exist_ok=True)
        for index, frame in sampled_frames(clip, every):
            cv2.imwrite(str(folder / f"{split}v_{ci:05d}_{index:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            counts[spec.label] += 1
    summary = {"data": str(data), "split": split, "seed": seed, "seconds": seconds, "every": every, "crfs": list(crfs),
               "max_width": max_width, "clip_version": CLIP_VERSION, "clips": len(specs), "per_class": counts}
    (out / "video_samples.json").write_text(json.dumps(summary, indent=1))
    return summary
