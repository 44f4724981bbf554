"""Evidence fusion (streamwatch.model.fusion): measurements, metadata round trip, and the
Classifier using it - on the shipped model with a fusion written into its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamwatch import CLASS_NAMES
from streamwatch.model.fusion import FEATURE_NAMES, FEATURES_VERSION, META_FUSION, Fusion, frame_features
from streamwatch.model.runtime import Classifier, ModelLoadError, default_model_path

K, F = len(CLASS_NAMES), len(FEATURE_NAMES)


def _scene(seed: int = 0) -> np.ndarray:
    """A colourful, textured 720p frame (gradients and shapes), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:720, 0:1280]
    img = np.stack([(xx / 5) % 256, (yy / 2.8) % 256, ((xx + 2 * yy) / 9) % 256], -1).astype(np.uint8)
    for _ in range(12):
        x, y = rng.integers(0, 1200, 2)
        cv2.rectangle(img, (int(x), int(y)), (int(x) + 60, int(y) + 40), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    return img


def test_features_measure_what_they_say():
    clean = _scene()
    f = dict(zip(FEATURE_NAMES, frame_features(clean)))
    grey = cv2.cvtColor(cv2.cvtColor(clean, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert frame_features(grey)[FEATURE_NAMES.index("log_chroma")] < 0.1 < f["log_chroma"]
    rng = np.random.default_rng(1)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    assert frame_features(noisy)[FEATURE_NAMES.index("log_noise_sigma")] > f["log_noise_sigma"] + 1.0
    impulses = clean.copy()
    mask = rng.random(clean.shape[:2]) < 0.03
    impulses[mask] = rng.choice([0, 255], size=(int(mask.sum()), 1))
    assert frame_features(impulses)[FEATURE_NAMES.index("log_impulse_permille")] > f["log_impulse_permille"] + 2.0
    cast = np.clip(clean * np.array([0.8, 0.8, 1.5]), 0, 255).astype(np.uint8)
    assert frame_features(cast)[FEATURE_NAMES.index("log_channel_imbalance")] > f["log_channel_imbalance"]
    gain = dict(zip(FEATURE_NAMES, frame_features(cast)))
    assert gain["p99_r_g"] > f["p99_r_g"] + 0.2  # red reaches white, green no longer does
    # A blended tint lifts the blacks in its own colour (blue here, BGR order).
    tint = np.clip(0.7 * clean + 0.3 * np.array([255, 40, 0]), 0, 255).astype(np.uint8)
    tinted = dict(zip(FEATURE_NAMES, frame_features(tint)))
    assert tinted["p2_b_g"] > f["p2_b_g"] + 0.3
    assert tinted["log_shadow_cast"] > f["log_shadow_cast"] + 0.5
    assert tinted["cast_coherence"] > f["cast_coherence"]
    blurred = cv2.GaussianBlur(clean, (0, 0), 5)
    assert frame_features(blurred)[FEATURE_NAMES.index("log_sharpness")] < f["log_sharpness"] - 1.0
    # Any shape a camera can deliver: grey, BGRA, tiny.
    assert frame_features(clean[:, :, 0]).shape == (F,)
    assert frame_features(cv2.cvtColor(clean, cv2.COLOR_BGR2BGRA)).shape == (F,)
    assert np.isfinite(frame_features(np.zeros((8, 8, 3), np.uint8))).all()


def _identity_fusion() -> Fusion:
    """Passes the network's probabilities through (features weighted 0)."""
    weights = np.zeros((K + F, K), np.float32)
    weights[:K] = np.eye(K)
    return Fusion(np.zeros(F, np.float32), np.ones(F, np.float32), weights, np.zeros(K, np.float32))


def _blocks(seed: int) -> np.ndarray:
    """A dead-leaves 720p picture: thousands of overlapping flat rectangles, the textbook
    stand-in for natural image statistics (edges at every position and scale)."""
    rng = np.random.default_rng(seed)
    img = np.full((720, 1280, 3), 128, np.uint8)
    for _ in range(3000):
        x, y = int(rng.integers(-40, 1280)), int(rng.integers(-40, 720))
        size = rng.integers(8, 120, 2)
        cv2.rectangle(img, (x, y), (x + int(size[0]), y + int(size[1])), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    return img


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_shifted_continuation_tells_a_torn_frame_from_a_horizon(seed):
    clean = _blocks(seed)
    torn = clean.copy()
    torn[430:] = np.roll(clean[430:], 150, axis=1)  # the lower part from a frame shifted sideways
    horizon = clean.copy()
    horizon[430:] = _blocks(seed + 100)[430:]  # a step into other content, shifted from nothing above
    score = {name: dict(zip(FEATURE_NAMES, frame_features(img)))["shifted_continuation"]
             for name, img in (("clean", clean), ("torn", torn), ("horizon", horizon))}
    assert score["torn"] > 0.6, score
    assert score["torn"] > score["clean"] + 0.4, score
    assert score["torn"] > score["horizon"] + 0.2, score


def _discs(seed: int) -> np.ndarray:
    """Dead leaves of discs (720p): natural-picture statistics without the long, perfectly
    vertical edges of :func:`_blocks`' rectangles, which no camera image has by the thousand."""
    rng = np.random.default_rng(seed)
    img = np.full((720, 1280, 3), 128, np.uint8)
    for _ in range(3000):
        centre = (int(rng.integers(-40, 1320)), int(rng.integers(-40, 760)))
        cv2.circle(img, centre, int(rng.integers(4, 80)), tuple(int(v) for v in rng.integers(0, 256, 3)), -1, cv2.LINE_AA)
    return img


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lower_column_seam_finds_where_a_torn_frame_wrapped(seed):
    clean = _discs(seed)
    torn = clean.copy()
    torn[430:] = np.roll(clean[430:], 150, axis=1)  # wraps round: a vertical seam at x = 150, below row 430 only
    filled = clean.copy()
    filled[430:, 150:] = clean[430:, :-150]  # shifted without wrapping; the uncovered edge left black
    filled[430:, :150] = 0
    horizon = clean.copy()
    horizon[430:] = _discs(seed + 100)[430:]  # a step into other content: no column runs down from it
    features = {name: dict(zip(FEATURE_NAMES, frame_features(img)))
                for name, img in (("clean", clean), ("torn", torn), ("filled", filled), ("horizon", horizon))}
    seam = {name: f["lower_column_seam"] for name, f in features.items()}
    gain = {name: f["lower_column_gain"] for name, f in features.items()}
    for broken in ("torn", "filled"):
        assert seam[broken] > 0.7, seam
        assert seam[broken] > seam["clean"] + 0.3 and seam[broken] > seam["horizon"] + 0.3, seam
        assert gain[broken] > gain["clean"] + 0.2 and gain[broken] > gain["horizon"] + 0.2, gain


def test_json_round_trip_and_shape_checks():
    fusion = _identity_fusion()
    back = Fusion.from_json(fusion.to_json(), K)
    np.testing.assert_array_equal(back.weights, fusion.weights)
    p = np.full((2, K), 1 / K, np.float32)
    np.testing.assert_allclose(back.apply(p, np.zeros((2, F), np.float32)), p, atol=1e-6)
    broken = json.loads(fusion.to_json())
    broken["weights"] = broken["weights"][:-1]
    with pytest.raises(ValueError):
        Fusion.from_json(json.dumps(broken), K)
    renamed = json.loads(fusion.to_json())
    renamed["features"] = ["something", "else"]
    with pytest.raises(ValueError):
        Fusion.from_json(json.dumps(renamed), K)
    # Same names, other arithmetic (or an export from before the version was recorded).
    for stale in (FEATURES_VERSION - 1, None):
        older = json.loads(fusion.to_json())
        if stale is None:
            del older["features_version"]
        else:
            older["features_version"] = stale
        with pytest.raises(ValueError, match="re-export"):
            Fusion.from_json(json.dumps(older), K)


def test_hidden_layer_fusion_round_trip_and_checks():
    rng = np.random.default_rng(0)
    h = 5
    fusion = Fusion(rng.normal(size=F).astype(np.float32), rng.uniform(0.5, 2, F).astype(np.float32),
                    rng.normal(size=(h, K)).astype(np.float32), rng.normal(size=K).astype(np.float32),
                    rng.normal(size=(K + F, h)).astype(np.float32), rng.normal(size=h).astype(np.float32))
    p = rng.dirichlet(np.ones(K), size=3).astype(np.float32)
    x = rng.normal(size=(3, F)).astype(np.float32)
    back = Fusion.from_json(fusion.to_json(), K)
    np.testing.assert_allclose(back.apply(p, x), fusion.apply(p, x), atol=1e-6)
    # The hidden layer is really used: the same numbers computed by hand.
    design = np.hstack([np.log(p + 1e-4), (x - fusion.mean) / fusion.scale])
    logits = np.maximum(design @ fusion.hidden_weights + fusion.hidden_bias, 0) @ fusion.weights + fusion.bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(fusion.apply(p, x), expected / expected.sum(1, keepdims=True), atol=1e-5)
    for key, value in (("hidden_bias", [0.0] * (h + 1)), ("hidden_weights", [[0.0] * h] * F), ("weights", [[1.0] * K] * (K + F))):
        broken = json.loads(fusion.to_json())
        broken[key] = value
        with pytest.raises(ValueError):
            Fusion.from_json(json.dumps(broken), K)
    broken = json.loads(fusion.to_json())
    broken["hidden_bias"][0] = "NaN"
    with pytest.raises(ValueError):
        Fusion.from_json(json.dumps(broken), K)
    del broken["hidden_bias"]
    with pytest.raises(ValueError):
        Fusion.from_json(json.dumps(broken), K)


def _with_fusion(tmp_path: Path, text: str | None) -> Path:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(default_model_path()))
    for p in list(proto.metadata_props):
        if p.key == META_FUSION:
            proto.metadata_props.remove(p)
    if text is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_FUSION, text
    out = tmp_path / "model.onnx"
    onnx.save(proto, str(out))
    return out


def test_classifier_applies_the_fusion_of_its_model(tmp_path):
    frames = [_scene(0), cv2.GaussianBlur(_scene(1), (0, 0), 6)]
    network = Classifier(_with_fusion(tmp_path, None), threads=1)
    assert not network.fused
    # A fusion that only listens to sharpness: blurred when low, normal when high.
    weights = np.zeros((K + F, K), np.float32)
    weights[K + FEATURE_NAMES.index("log_sharpness"), CLASS_NAMES.index("normal")] = 4.0
    weights[K + FEATURE_NAMES.index("log_sharpness"), CLASS_NAMES.index("blurred")] = -4.0
    feats = np.stack([frame_features(f) for f in frames])
    fusion = Fusion(feats.mean(0), feats.std(0) + 1e-3, weights, np.zeros(K, np.float32))
    fused = Classifier(_with_fusion(tmp_path, fusion.to_json()), threads=1)
    assert fused.fused
    p = fused.predict(frames)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert [CLASS_NAMES[i] for i in p.argmax(1)] == ["normal", "blurred"]
    # The network alone is still there on request, and is what predict_views returns.
    plain = Classifier(_with_fusion(tmp_path, fusion.to_json()), threads=1, fusion=False)
    assert not plain.fused
    np.testing.assert_allclose(plain.predict(frames), network.predict(frames), atol=1e-6)


@pytest.mark.parametrize("text", ["not json", json.dumps({"features": list(FEATURE_NAMES)}), "[]"])
def test_bad_fusion_metadata_is_a_load_error(tmp_path, text):
    with pytest.raises(ModelLoadError, match="fusion"):
        Classifier(_with_fusion(tmp_path, text), threads=1)


def test_network_dropout_keeps_the_fusion_working_when_the_network_is_wrong():
    """A network that is always right on its own training rows and not on new scenes (the
    over-confidence seen in docs/results.md): without dropout the fusion follows it blindly
    when it is wrong; with dropout the measurements outvote it a third of the time, and they
    decide better when the network says nothing."""
    pytest.importorskip("torch")
    from streamwatch.train.export import fit_fusion

    rng = np.random.default_rng(0)
    n = 1600
    y = rng.integers(0, K, n)
    features = rng.normal(0, 1, (n, F)).astype(np.float32)
    features[np.arange(n), y % F] += 2.5  # each class shows in one measurement, with noise
    confident = np.full((n, K), 0.002, np.float32)
    confident[np.arange(n), y] = 1 - 0.002 * (K - 1)
    misleading = np.roll(confident, 1, axis=1)  # the network confidently names the next class
    silent = np.full((n, K), 1.0 / K, np.float32)
    scores = {}
    for dropout in (0.0, 0.5):
        fusion = fit_fusion(confident, features, y, epochs=15, network_dropout=dropout)
        assert (fusion.apply(confident, features).argmax(1) == y).mean() > 0.95
        scores[dropout] = {name: float((fusion.apply(p, features).argmax(1) == y).mean())
                           for name, p in (("silent", silent), ("misleading", misleading))}
    # measured: silent 0.80 -> 0.86, misleading 0.00 -> 0.35 (seeded)
    assert scores[0.5]["silent"] > max(0.8, scores[0.0]["silent"])
    assert scores[0.5]["misleading"] > scores[0.0]["misleading"] + 0.2


def test_ensemble_is_the_mean_of_its_members_logits_and_round_trips():
    rng = np.random.default_rng(1)
    mean, scale = rng.normal(size=F).astype(np.float32), rng.uniform(0.5, 2, F).astype(np.float32)

    def member(h: int) -> Fusion:
        return Fusion(mean, scale, rng.normal(size=(h, K)).astype(np.float32), rng.normal(size=K).astype(np.float32),
                      rng.normal(size=(K + F, h)).astype(np.float32), rng.normal(size=h).astype(np.float32))

    members = [member(4), member(6), member(5)]
    ensemble = Fusion.ensemble(members)
    p = rng.dirichlet(np.ones(K), size=7).astype(np.float32)
    x = rng.normal(size=(7, F)).astype(np.float32)
    expected = np.mean([m.logits(p, x) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.logits(p, x), expected, rtol=1e-5, atol=1e-4)
    assert ensemble.hidden_weights.shape == (K + F, 15)
    # Same metadata format: the daemon loads an ensemble like any one-hidden-layer fusion.
    back = Fusion.from_json(ensemble.to_json(), K)
    np.testing.assert_allclose(back.apply(p, x), ensemble.apply(p, x), atol=1e-6)
    with pytest.raises(ValueError, match="standardised"):
        Fusion.ensemble([members[0], Fusion(mean + 1, scale, members[1].weights, members[1].bias,
                                            members[1].hidden_weights, members[1].hidden_bias)])
    with pytest.raises(ValueError, match="hidden"):
        Fusion.ensemble([Fusion(mean, scale, np.zeros((K + F, K), np.float32), np.zeros(K, np.float32))])
