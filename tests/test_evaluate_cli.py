"""`streamwatch evaluate --data DIR --json` on real frames with the shipped model; bad files are skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.model.runtime import default_model_path


@pytest.mark.skipif(not default_model_path().is_file(), reason="no shipped model")
def test_evaluate_json_schema_and_unreadable_files(tmp_path, clip_factory):
    cap = cv2.VideoCapture(str(clip_factory(seconds=3, content="pan", size=(640, 360))))
    ok, frame = cap.read()
    cap.release()
    assert ok
    (tmp_path / "normal").mkdir()
    (tmp_path / "monochrome").mkdir()
    (tmp_path / "not_a_class").mkdir()
    cv2.imwrite(str(tmp_path / "normal" / "a.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "monochrome" / "b.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(tmp_path / "not_a_class" / "c.jpg"), frame)
    (tmp_path / "normal" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = subprocess.run([sys.executable, "-m", "streamwatch.cli", "evaluate", "--data", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"accuracy", "per_class", "confusion", "false_alarm_rate"}
    assert set(result["per_class"]) == {"normal", "monochrome"}
    assert result["per_class"]["normal"]["n"] == 1 and result["per_class"]["monochrome"]["n"] == 1
    assert len(result["confusion"]) == len(CLASS_NAMES) and all(len(r) == len(CLASS_NAMES) for r in result["confusion"])
    assert sum(map(sum, result["confusion"])) == 2
    assert "broken.jpg" in out.stderr
