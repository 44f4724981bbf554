"""Severity bench: the classifier's accuracy per fault kind, and on the faults that reach issue 3's minimums.

``dataset build`` draws fault severities from a little *below* issue 3's minimums upward, so that
the decision boundary is learned, and labels them all faults; the held-out evaluation promises
faults "at least at these severities". Since session 23 every sample's drawn kind and severity is
in the build's ``samples.csv`` (``fault``, ``meets_minimum``). This bench scores a split with
``streamwatch evaluate``'s predictor (network + fusion, what the daemon runs) and splits each
class's accuracy by fault kind (tint or channel gains, gaussian / defocus / motion / shake blur,
smear / blocks / torn frame, ...) and into the samples that meet the minimum and those below it.
It also reports the whole split restricted to the samples that meet it.

    python bench/severity.py --data /work/scratch/model/ds_v3s [--split test] [--model PATH] [--json]

``--images DIR``: score the pictures of another folder with the same names (for example an older
build of the same seed, which is byte for byte the same pictures) while reading the severities
from ``--data``'s ``samples.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import CLASS_NAMES  # noqa: E402


def _key(path: str) -> str:
    """split/class/name of a sample path: the part that is the same wherever a build is written."""
    return "/".join(Path(path).parts[-3:])


def tally(samples: list[dict], predicted: dict[str, str]) -> dict:
    """Accuracy per class split by fault kind and by whether the fault meets issue 3's minimum."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in samples:
        key = _key(row["file"])
        if key not in predicted:
            continue
        label = row["label"]
        right = int(predicted[key] == label)
        kind = json.loads(row["fault"]).get("kind", "") if row.get("fault") else ""
        meets = row.get("meets_minimum", "")
        level = "" if label == "normal" else ("meets" if meets == "True" else "below")
        for group in ((label, "all"), (label, f"kind:{kind}" if kind else ""), (label, level)):
            if group[1]:
                groups[group][0] += right
                groups[group][1] += 1
    per_class: dict[str, dict] = {}
    for (label, group), (right, n) in sorted(groups.items()):
        per_class.setdefault(label, {})[group] = {"accuracy": round(right / n, 4), "right": right, "n": n}
    # normal pictures have no severity: all of them count; a fault class counts its samples that meet it
    in_spec = [(label, d["all"] if label == "normal" else d.get("meets", {"right": 0, "n": 0}))
               for label, d in per_class.items()]
    right = sum(v["right"] for _, v in in_spec)
    n = sum(v["n"] for _, v in in_spec)
    return {"per_class": per_class,
            "meets_minimum": {"accuracy": round(right / max(n, 1), 4), "n": n,
                              "per_class": {label: round(v["right"] / v["n"], 4) for label, v in in_spec if v["n"]}}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="built dataset (its samples.csv has the severities)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--images", type=Path, default=None, help="score this folder's pictures instead of DATA/SPLIT")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from streamwatch.train.evaluate import evaluate

    with open(args.data / "samples.csv", newline="") as fh:
        samples = [r for r in csv.DictReader(fh) if r["split"] == args.split]
    if not samples or "meets_minimum" not in samples[0]:
        print(f"error: {args.data / 'samples.csv'} has no {args.split} samples with severities "
              "(build the dataset with streamwatch >= session 23)", file=sys.stderr)
        return 2
    res = evaluate(args.images or args.data / args.split, args.model, threads=args.threads)
    pred = res["_predictions"]
    predicted = {_key(f): CLASS_NAMES[int(np.argmax(p))] for f, p in zip(pred["files"], pred["probabilities"])}
    out = {"data": str(args.data), "split": args.split, "model": res["_model"], "accuracy": res["accuracy"],
           "false_alarm_rate": res["false_alarm_rate"], **tally(samples, predicted)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"model: {out['model']}\nwhole split: {out['accuracy'] * 100:.2f} %; samples meeting issue 3's minimums: "
          f"{out['meets_minimum']['accuracy'] * 100:.2f} % of {out['meets_minimum']['n']}")
    for label, groups in out["per_class"].items():
        print(f"{label:15s} " + "  ".join(f"{g} {v['right']}/{v['n']} ({v['accuracy'] * 100:.1f} %)"
                                          for g, v in groups.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
