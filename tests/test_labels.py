"""`streamwatch label`: frames from a real camera clip or a list file land in the reservoir."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "streamwatch.cli", *args], capture_output=True, text=True, timeout=120)


def test_label_from_camera_and_from_file(tmp_path, clip_factory):
    clip = clip_factory(seconds=6, content="pan")
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ncameras: [{{id: gate, url: {clip}}}]\n")
    out = run_cli("label", "gate", "--as", "normal", "--frames", "2", "--interval", "0.5", "--config", str(config))
    assert out.returncode == 0, out.stderr
    saved = list((tmp_path / "state" / "reservoir" / "gate" / "labels" / "normal").glob("*.jpg"))
    assert len(saved) == 2 and cv2.imread(str(saved[0])) is not None

    image = tmp_path / "night.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), 40, np.uint8))
    listing = tmp_path / "list.csv"
    listing.write_text("# path,class\nnight.png,monochrome\n")
    out = run_cli("label", "gate", "--file", str(listing), "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "state" / "reservoir" / "gate" / "labels" / "monochrome").glob("*.jpg"))) == 1

    bad = run_cli("label", "gate", "--as", "blurry", "--config", str(config))
    assert bad.returncode == 2 and "unknown class 'blurry'" in bad.stderr
    bad = run_cli("label", "nope", "--as", "normal", "--config", str(config))
    assert bad.returncode == 2 and "not in the config" in bad.stderr
