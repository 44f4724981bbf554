"""Fill `streamwatch export --fuse-on`'s caches for the fusion folders of scripts/rebuild-data.sh
while that script is still building the rest - the network's probabilities and the fusion's
measurements of each folder as soon as the folder is finished - so that the export afterwards
only fits. Session 27: on a fresh machine the builds and the caches of the shipped fusion's
74,604 rows each take about an hour of both cores; run one after the other they leave a three-hour
session little time for anything else.

    python scripts/fill_fusion_caches.py OUT [--checkpoint PT] [--variant V] [--size S] [--tiles T]

(started by ``bash scripts/rebuild-data.sh OUT caches fusion ...``). The probabilities are keyed by
the checkpoint's weights digest: an export that calibrates offsets onto the head (``--calibrate-on``)
reuses them only when the offsets come out 0, as they do for the shipped network (session 25).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

#: The folders `--fuse-on` gets for the shipped fusion (docs/results.md, session 24), in the order
#: scripts/rebuild-data.sh finishes them.
FUSION_FOLDERS = ("ds_v3/train", "ds_v3/val", "ds_p3/train", "ds_p3/val", "ds_p3b/train", "ds_o3/train", "ds_o3/val",
                  "ds_h3/train", "ds_h3/val", "ds_v3v/train", "ds_v3v/val")


def is_built(folder: Path) -> bool:
    """Whether rebuild-data.sh has finished ``folder`` (it writes these files last)."""
    if folder.parent.name == "ds_v3v":  # H.264 samples: one `dataset video` per split
        return (folder / "video_samples.json").exists()
    return (folder.parent / "dataset.json").exists()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="rebuild-data.sh's output folder")
    ap.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "streamwatch/assets/model.pt")
    ap.add_argument("--variant", default="eca_1")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads of the network pass (default 1: the builds use the rest)")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes decoding and measuring pictures (default 2: once the builds are done, the last "
                         "folders' measurements are all that is left to run)")
    ap.add_argument("--poll", type=float, default=20.0, help="seconds between looks for a finished folder")
    args = ap.parse_args()

    import torch

    from streamwatch.model.preprocess import Geometry
    from streamwatch.train.export import load_model
    from streamwatch.train.trainer import features_cache, probabilities_cache

    torch.set_num_threads(args.threads)
    geometry = Geometry(size=args.size, tiles=args.tiles)
    model = load_model(args.checkpoint, args.variant, geometry)
    for name in FUSION_FOLDERS:
        folder = args.out / name
        while not is_built(folder):
            time.sleep(args.poll)
        started = time.monotonic()
        probabilities_cache(model, folder, geometry, workers=args.threads, progress=False)
        features_cache(folder, workers=args.workers, progress=False)
        print(f"==> {time.strftime('%H:%M:%S', time.gmtime())} caches of {name}: {time.monotonic() - started:.0f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
