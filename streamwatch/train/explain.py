"""Grad-CAM (seed 000 section 3.3) for the multi-view classifier.

The class score's gradient is taken at one backbone layer for every view.
The whole-frame view's map is stretched over the image; each native-resolution
tile's map is pasted at the tile's own position (drawn as a box), so the
overlay shows where in the frame the evidence was found. The title line gives
the predicted class and its confidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from streamwatch import CLASS_NAMES
from streamwatch.model.preprocess import Geometry, make_views, runtime_frame, tile_boxes
from streamwatch.train.export import load_model

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _shipped_geometry() -> tuple[str, Geometry] | None:
    onnx_path = ASSETS / "model.onnx"
    if not onnx_path.exists():
        return None
    from streamwatch.model.runtime import Classifier

    clf = Classifier(onnx_path)
    return clf.variant or "eca_1", clf.geometry


def grad_cam(model: torch.nn.Module, views: np.ndarray, layer: int = -1, target: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(cams (V, h, w) in [0, 1], probabilities (8,), target index)."""
    feats = model.backbone.features
    mod = feats[layer]
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["act"] = out

    h = mod.register_forward_hook(hook)
    try:
        model.eval()
        x = torch.from_numpy(views[None]).requires_grad_(False)
        logits = model(x)
        probs = torch.softmax(logits, 1)[0].detach().numpy()
        t = int(probs.argmax()) if target is None else int(target)
        model.zero_grad()
        logits[0, t].backward()
        act, grad = store["act"], store["act"].grad
        w = grad.mean((2, 3), keepdim=True)
        cam = torch.relu((w * act).sum(1)).detach().numpy()  # (V, h, w)
    finally:
        h.remove()
    cam = cam / max(float(cam.max()), 1e-8)
    return cam, probs, t


def explain(image: str | Path, out: str | Path, model_path: str | Path | None = None, variant: str = "eca_1",
            geometry: Geometry | None = None, target: str | None = None, layer: int = -1) -> dict:
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {image}")
    if model_path is None:
        model_path = ASSETS / "model.pt"
        shipped = _shipped_geometry()
        if shipped:
            variant, geometry = shipped
    geometry = geometry or Geometry()
    model = load_model(model_path, variant, geometry)
    img = runtime_frame(img)  # what Classifier.frame_inputs looks at: the overlay is drawn on it
    views = make_views(img, geometry)
    t_idx = CLASS_NAMES.index(target) if target else None
    cams, probs, t = grad_cam(model, views, layer, t_idx)
    hgt, wid = img.shape[:2]
    heat = cv2.resize(cams[0], (wid, hgt), interpolation=cv2.INTER_LINEAR)
    boxes = tile_boxes(img, geometry)
    for j, (x, y, s) in enumerate(boxes, start=1):
        x0, y0, x1, y1 = int(round(x)), int(round(y)), int(round(x + s)), int(round(y + s))
        x1, y1 = min(x1, wid), min(y1, hgt)
        patch = cv2.resize(cams[j], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], patch)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    overlay = cv2.addWeighted(img, 0.55, color, 0.45, 0)
    for x, y, s in boxes:
        cv2.rectangle(overlay, (int(x), int(y)), (int(x + s), int(y + s)), (255, 255, 255), max(1, wid // 500))
    pred = int(probs.argmax())
    text = f"{CLASS_NAMES[pred]} {probs[pred] * 100:.1f}%"
    if t != pred:
        text += f" | Grad-CAM for {CLASS_NAMES[t]} ({probs[t] * 100:.1f}%)"
    band = max(24, hgt // 18)
    canvas = np.zeros((hgt + band, wid, 3), np.uint8)
    canvas[band:] = overlay
    scale = band / 40
    cv2.putText(canvas, text, (6, int(band * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), canvas):
        raise RuntimeError(f"cannot write {out}")
    return {"image": str(image), "out": str(out), "predicted": CLASS_NAMES[pred], "confidence": float(probs[pred]),
            "explained": CLASS_NAMES[t], "probabilities": {c: float(p) for c, p in zip(CLASS_NAMES, probs)}}


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(explain(sys.argv[1], sys.argv[2])))
