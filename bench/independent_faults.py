"""Faults made by a second, independent implementation of issue 3's fault definitions.

``streamwatch evaluate`` on our test split scores the model on faults made by *our own*
``streamwatch/train/degrade.py`` - the code the model learned from. The project is judged on
faults made by code written independently of ours. This script is a stand-in for that code:
it was written from the issue's text alone (the severities quoted below), with other
libraries (Pillow for blur, grey conversion, resizing and JPEG; NumPy FFT convolution for the
defocus and motion kernels) and other formulas (the exact sRGB transfer curve instead of
gamma 2.2, ITU-R 601 luma, per-channel salt-and-pepper, flat macroblocks), and it never imports
``streamwatch.train``. Severities are drawn from each minimum of the issue up to about twice it.

It takes the pictures of one ``normal`` folder (held-out scenes: the test split), and writes a
dataset folder that ``streamwatch evaluate`` reads: ``OUT/<class>/*.jpg``, one picture per
normal input and class, each resized to a random width of 500-1280 px (never enlarged more
than 1.1x, except pictures narrower than 500 px) with the fault made at that width, and saved as
JPEG at quality 80-95 (the delivery of issue 3). ``normal`` is the input re-delivered the same
way. ``--low-res``: a CIF/D1 camera instead - the fault is made at a width of 352-704 px and
the picture enlarged to the delivered width afterwards.

    python bench/independent_faults.py --normals /work/scratch/model/ds_v3/test/normal \
        --out /work/scratch/independent --seed 0
    streamwatch evaluate --data /work/scratch/independent --json

The parameters of every picture go to ``OUT/params.jsonl``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FAULTS = ("normal", "frozen", "overexposed", "blurred", "color_cast", "gaussian_noise", "salt_pepper", "monochrome")


def srgb_to_linear(u8: np.ndarray) -> np.ndarray:
    c = u8.astype(np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    c = np.clip(lin, 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
    return np.round(s * 255.0).astype(np.uint8)


def fft_convolve(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel`` (edge-padded, via the FFT)."""
    kh, kw = kernel.shape
    py, px = kh, kw
    padded = np.pad(rgb.astype(np.float64), ((py, py), (px, px), (0, 0)), mode="edge")
    h, w = padded.shape[:2]
    k = np.zeros((h, w))
    k[:kh, :kw] = kernel / kernel.sum()
    k = np.roll(k, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    kf = np.fft.rfft2(k)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(padded[:, :, c]) * kf, s=(h, w)) for c in range(3)], axis=2)
    return np.clip(np.round(out[py:-py, px:-px]), 0, 255).astype(np.uint8)


def overexposed(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Exposure x2.2 or more in linear light; raised until at least a quarter of the frame clips."""
    lin = srgb_to_linear(rgb)
    gain = float(rng.uniform(2.2, 4.5))
    while gain < 16 and (lin * gain >= 1.0).all(axis=2).mean() < 0.25:
        gain *= 1.25
    return linear_to_srgb(lin * gain), {"gain": round(gain, 2)}


def blurred(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Gaussian (sigma >= 2.5 px at 768 px, scaled), defocus disk (r >= 4 px) or motion (>= 9 px)."""
    kind = str(rng.choice(["gaussian", "defocus", "motion"]))
    width = rgb.shape[1]
    if kind == "gaussian":
        sigma = float(rng.uniform(2.5, 5.0)) * width / 768
        return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(sigma))), {"kind": kind, "sigma": round(sigma, 2)}
    if kind == "defocus":
        r = float(rng.uniform(4.0, 8.0))
        n = int(np.ceil(r))
        yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
        disk = (xx**2 + yy**2 <= r * r).astype(np.float64)
        return fft_convolve(rgb, disk), {"kind": kind, "radius": round(r, 2)}
    length = float(rng.uniform(9.0, 18.0))
    angle = float(rng.uniform(0, np.pi))
    n = int(np.ceil(length / 2)) + 1
    kernel = np.zeros((2 * n + 1, 2 * n + 1))
    for t in np.linspace(-length / 2, length / 2, int(length * 4)):
        kernel[int(round(n + t * np.sin(angle))), int(round(n + t * np.cos(angle)))] = 1.0
    return fft_convolve(rgb, kernel), {"kind": kind, "length": round(length, 1), "angle_deg": round(np.degrees(angle))}


def color_cast(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One channel x >= 1.35 with the others x <= 0.85, or a colour tint blended at >= 25 %."""
    if rng.random() < 0.5:
        gains = rng.uniform(0.6, 0.85, size=3)
        up = int(rng.integers(3))
        gains[up] = rng.uniform(1.35, 1.7)
        out = np.clip(rgb.astype(np.float64) * gains, 0, 255).round().astype(np.uint8)
        return out, {"kind": "gains", "gains_rgb": [round(float(g), 2) for g in gains]}
    alpha = float(rng.uniform(0.25, 0.45))
    tints = {"orange": (255, 140, 0), "green": (0, 200, 60), "blue": (30, 80, 255), "magenta": (230, 0, 200),
             "yellow": (255, 230, 0), "red": (220, 20, 20), "cyan": (0, 220, 230)}
    name = str(rng.choice(list(tints)))
    tint = np.array(tints[name], dtype=np.float64)
    out = (1 - alpha) * rgb.astype(np.float64) + alpha * tint
    return np.clip(out, 0, 255).round().astype(np.uint8), {"kind": "tint", "tint": name, "alpha": round(alpha, 2)}


def gaussian_noise(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Additive gaussian noise, sigma >= 12 of 255, per channel (colour) or shared (luminance)."""
    sigma = float(rng.uniform(12.0, 25.0))
    colour = bool(rng.random() < 0.5)
    h, w = rgb.shape[:2]
    noise = rng.normal(0.0, sigma, size=(h, w, 3) if colour else (h, w, 1))
    out = np.clip(rgb.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)
    return out, {"sigma": round(sigma, 1), "colour": colour}


def salt_pepper(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """At least 1 % of the pixels set to black or white (whole pixels, or single channels)."""
    amount = float(rng.uniform(0.01, 0.05))
    per_channel = bool(rng.random() < 0.3)
    out = rgb.copy()
    h, w = rgb.shape[:2]
    if per_channel:
        hit = rng.random((h, w, 3)) < amount
        out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    else:
        hit = rng.random((h, w)) < amount
        out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)[:, None]
    return out, {"amount": round(amount, 4), "per_channel": per_channel}


def monochrome(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Chroma removed entirely (Pillow's ITU-R 601-2 luma)."""
    return np.asarray(Image.fromarray(rgb).convert("L").convert("RGB")), {}


def frozen(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A broken decode from some line down: smeared rows, grey or green macroblocks, or a torn frame."""
    h, w = rgb.shape[:2]
    kind = str(rng.choice(["smear", "grey_blocks", "green_blocks", "torn"]))
    y0 = int(h * rng.uniform(0.3, 0.75))
    out = rgb.copy()
    if kind == "smear":
        out[y0:] = rgb[y0 - 1]
    elif kind in ("grey_blocks", "green_blocks"):
        y0 -= y0 % 16
        colour = np.array([128, 128, 128] if kind == "grey_blocks" else [0, 135, 0], dtype=np.uint8)
        out[y0:] = colour
        # a few surviving blocks of the real picture, as a broken decode leaves them
        for by in range(y0, h, 16):
            for bx in range(0, w, 16):
                if rng.random() < 0.08:
                    out[by : by + 16, bx : bx + 16] = rgb[by : by + 16, bx : bx + 16]
    else:
        shift = int(w * rng.uniform(0.05, 0.25)) * int(rng.choice([-1, 1]))
        dy = int(rng.integers(-h // 20, h // 20 + 1))
        other = np.roll(rgb, (dy, shift), axis=(0, 1))
        out[y0:] = other[y0:]
    return out, {"kind": kind, "from_row_share": round(y0 / h, 2)}


def normal(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    return rgb, {}


MAKERS = {"normal": normal, "frozen": frozen, "overexposed": overexposed, "blurred": blurred,
          "color_cast": color_cast, "gaussian_noise": gaussian_noise, "salt_pepper": salt_pepper,
          "monochrome": monochrome}


def resized(rgb: np.ndarray, width: int) -> np.ndarray:
    if rgb.shape[1] == width:
        return rgb
    height = max(16, round(rgb.shape[0] * width / rgb.shape[1]))
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))


def deliver(rgb: np.ndarray, width: int, quality: int) -> bytes:
    image = Image.fromarray(resized(rgb, width))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normals", type=Path, required=True, help="folder of clean pictures (held-out scenes)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--low-res", action="store_true",
                    help="a CIF/D1 camera (352-704 px wide) whose faulty picture is enlarged to the delivered width")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pictures (0: all)")
    args = ap.parse_args(argv)
    paths = sorted(p for p in args.normals.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        ap.error(f"no pictures in {args.normals}")
    for name in FAULTS:
        (args.out / name).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    with open(args.out / "params.jsonl", "w") as log:
        for i, path in enumerate(paths):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            for name in FAULTS:
                width = int(rng.integers(500, 1281))
                quality = int(rng.integers(80, 96))
                if args.low_res:
                    # a CIF/D1 camera: the fault happens at the camera's width, the picture is enlarged
                    camera = int(rng.integers(352, 705))
                else:
                    # the fault is made at the delivered width, never enlarging a picture beyond 1.1x
                    width = min(width, max(500, int(rgb.shape[1] * 1.1)))
                    camera = width
                base = resized(rgb, camera)
                faulty, params = MAKERS[name](base, rng)
                target = args.out / name / f"{i:05d}.jpg"
                target.write_bytes(deliver(faulty, width, quality))
                log.write(json.dumps({"file": str(target), "source": path.name, "class": name, "camera_width": camera,
                                      "width": width, "quality": quality, **params}) + "\n")
    print(f"{len(paths)} pictures x {len(FAULTS)} classes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
