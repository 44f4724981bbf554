"""``bench/independent_faults.py``: the second implementation of issue 3's faults writes a
folder ``streamwatch evaluate`` reads, at the delivery and severities the issue promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from streamwatch import CLASS_NAMES

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "train" / "stills"


def test_independent_faults_folder_matches_the_issue(tmp_path):
    normals = tmp_path / "normals"
    normals.mkdir()
    for name in ("skimage_coffee.png", "opencv_home.jpg", "sklearn_china.jpg"):
        Image.open(SHARED / name).convert("RGB").save(normals / (Path(name).stem + ".png"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "independent_faults.py"), "--normals", str(normals),
                           "--out", str(out), "--seed", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(CLASS_NAMES)
    records = [json.loads(line) for line in (out / "params.jsonl").read_text().splitlines()]
    assert len(records) == 3 * len(CLASS_NAMES)
    for r in records:
        image = Image.open(r["file"])
        assert image.format == "JPEG" and 500 <= image.width <= 1280 and image.width == r["width"]
        assert 80 <= r["quality"] <= 95
        fault = r["class"]
        if fault == "gaussian_noise":
            assert r["sigma"] >= 12
        elif fault == "salt_pepper":
            assert r["amount"] >= 0.01
        elif fault == "overexposed":
            assert r["gain"] >= 2.2
        elif fault == "color_cast" and r["kind"] == "gains":
            assert max(r["gains_rgb"]) >= 1.35 and sorted(r["gains_rgb"])[1] <= 0.85
        elif fault == "color_cast":
            assert r["alpha"] >= 0.25
        elif fault == "blurred":
            key, minimum = {"gaussian": ("sigma", 2.5 * r["camera_width"] / 768 - 0.01), "defocus": ("radius", 4.0),
                            "motion": ("length", 9.0)}[r["kind"]]
            assert r[key] >= minimum
        elif fault == "monochrome":
            pixels = np.asarray(image.convert("RGB")).astype(np.int16)
            assert np.abs(pixels - pixels.mean(axis=2, keepdims=True)).max() <= 2  # JPEG of a grey picture
