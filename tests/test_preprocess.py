"""The shared input pipeline (numpy/OpenCV only)."""

import subprocess
import sys
import time

import numpy as np
import pytest

from streamwatch.model.preprocess import MEAN, STD, Geometry, make_views, make_views_u8, normalize, tile_boxes


def _frame(h=1080, w=1920, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
    import cv2

    f = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    f[: h // 3, : w // 3] = 90  # a flat region
    return f


@pytest.mark.parametrize("shape", [(1080, 1920), (720, 1280), (288, 352), (144, 176), (500, 500), (60, 90)])
def test_shapes_and_dtype_for_any_resolution(shape):
    g = Geometry(112, 2)
    v = make_views(_frame(*shape), g)
    assert v.shape == (3, 3, 112, 112) and v.dtype == np.float32
    assert np.isfinite(v).all()


def test_tiles_are_native_resolution_crops():
    f = _frame()
    g = Geometry(112, 2)
    u8 = make_views_u8(f, g)
    boxes = tile_boxes(f, g)
    assert len(boxes) == 2
    for j, (x, y, s) in enumerate(boxes, start=1):
        x, y, s = int(x), int(y), int(s)
        assert s == 112
        np.testing.assert_array_equal(u8[j], f[y : y + s, x : x + s].transpose(2, 0, 1))
    # the most textured and the least textured candidate are different places
    assert boxes[0] != boxes[1]


def test_plain_resize_geometry_is_one_view():
    v = make_views(_frame(), Geometry(96, 0))
    assert v.shape == (1, 3, 96, 96)


def test_normalisation_constants():
    u8 = np.array([0, 128, 255], np.uint8)
    np.testing.assert_allclose(normalize(u8), (u8 / 255.0 - MEAN) / STD, atol=1e-6)


def test_grayscale_and_bgra_input():
    f = _frame(300, 400)
    gray = f[:, :, 0]
    v = make_views_u8(gray, Geometry(64, 1))
    assert (v[:, 0] == v[:, 1]).all() and (v[:, 1] == v[:, 2]).all()
    bgra = np.dstack([f, np.full(f.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(make_views_u8(bgra, Geometry(64, 1)), make_views_u8(f, Geometry(64, 1)))


def test_deterministic():
    f = _frame()
    np.testing.assert_array_equal(make_views(f), make_views(f))


def test_noise_survives_in_tiles_but_not_in_the_whole_view():
    """The reason for native tiles: sigma-15 noise is averaged away by the downscale."""
    rng = np.random.default_rng(1)
    clean = np.full((1080, 1920, 3), 120, np.uint8)
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    v = make_views_u8(noisy, Geometry(112, 2)).astype(np.float32)
    assert v[0].std() < 3.0  # whole view: noise gone
    assert v[1].std() > 12.0 and v[2].std() > 12.0  # native tiles: noise kept


def test_cheap_enough_for_the_daemon():
    f = _frame()
    make_views(f)
    t = time.perf_counter()
    for _ in range(20):
        make_views(f)
    ms = (time.perf_counter() - t) / 20 * 1000
    assert ms < 25, f"{ms:.1f} ms per 1080p frame"  # ~2.5 ms measured; generous for shared CI cores


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        make_views(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        make_views(np.zeros((10, 10, 2), np.uint8))


def test_preprocess_and_runtime_do_not_import_torch():
    code = ("import sys, streamwatch.model.preprocess, streamwatch.model.runtime, streamwatch.train.evaluate;"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
