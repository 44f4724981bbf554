"""CLI sub-commands of the training side: dataset, train, evaluate, explain,
export. ``streamwatch.cli`` calls :func:`register`; torch is imported lazily
inside the command functions (the daemon runs without torch).

Stand-alone: ``python -m streamwatch.train.commands <command> ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _geometry(args: argparse.Namespace):
    from streamwatch.model.preprocess import Geometry

    return Geometry(size=args.size, tiles=args.tiles)


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from streamwatch.train.dataset import build_dataset

    per_class = {"train": args.train_per_class, "val": args.val_per_class, "test": args.test_per_class}
    s = build_dataset(args.src, args.out, seed=args.seed, per_class=per_class, workers=args.workers,
                      progress=not args.quiet, first_index=args.first_index, coded_noise=args.coded_noise,
                      night_share=args.night_share, paired=args.paired, osd=args.osd,
                      recolour=args.recolour, upscale=args.upscale,
                      downscale=args.downscale, upscale_fault_first=args.upscale_fault_first,
                      upscale_max=args.upscale_max, near_minimum=args.near_minimum)
    print(json.dumps({"out": str(args.out), "counts": s["counts"], "excluded": s["excluded"],
                      "sources": {k: len(v) for k, v in s["sources"].items()}}, indent=1))
    return 0


def cmd_dataset_scenes(args: argparse.Namespace) -> int:
    from streamwatch.train.scenes import SCENES_VERSION, write_scenes

    version = args.version or SCENES_VERSION
    paths = write_scenes(args.out, args.count, first=args.first, width=args.width, height=args.height, version=version)
    print(json.dumps({"out": str(args.out), "scenes": len(paths), "first": args.first,
                      "size": [args.width, args.height], "version": version}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from streamwatch.train.trainer import TrainConfig, train

    cfg = TrainConfig(data=str(args.data), out=str(args.out), variant=args.variant, size=args.size, tiles=args.tiles,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                      train_limit=args.train_limit, time_budget_min=args.time_budget_min, workers=args.workers,
                      warmup_steps=args.warmup_steps, init=str(args.init or ""))
    s = train(cfg, resume=not args.no_resume, progress=not args.quiet)
    print(json.dumps({k: s[k] for k in ("variant", "geometry", "params", "epochs_done", "best_val_acc", "train_samples")}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from streamwatch.model.runtime import ModelLoadError
    from streamwatch.train.evaluate import (evaluate, evaluate_classical, format_table, plot_confusion, to_json,
                                            write_predictions)

    if args.predictions and args.classical:
        print("error: --predictions needs a model (the classical statistics give no probabilities)", file=sys.stderr)
        return 2
    try:
        if args.classical:
            res = evaluate_classical(args.data)
        else:
            res = evaluate(args.data, args.model, threads=args.threads, variant=args.variant,
                           geometry=_geometry(args), progress=not args.json and not args.quiet,
                           fusion=not args.no_fusion, runtime=args.runtime)
    except (ModelLoadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.plot:
        plot_confusion(res, args.plot)
    if args.predictions:
        write_predictions(res, args.predictions)
    print(to_json(res) if args.json else format_table(res))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from streamwatch.train.export import (FUSION_HIDDEN, FUSION_MEMBERS, export_onnx, load_model, save_state_dict,
                                          training_summary)

    hidden = FUSION_HIDDEN if args.fusion_hidden is None else args.fusion_hidden
    # A logistic-regression fusion is one fit (averaging them gains nothing); an ensemble is asked for explicitly.
    members = (FUSION_MEMBERS if hidden else 1) if args.fusion_members is None else args.fusion_members
    if members > 1 and not hidden:
        print("error: --fusion-members > 1 needs a fusion with a hidden layer (--fusion-hidden > 0)", file=sys.stderr)
        return 2
    geom = _geometry(args)
    model = load_model(args.checkpoint, args.variant, geom)
    training = training_summary(args.data)
    if args.calibrate_on:
        from streamwatch.train.export import calibrate_head

        cal = calibrate_head(model, args.calibrate_on, geom, threads=args.threads)
        training["class_bias_calibration"] = cal
        print(json.dumps({"calibration": cal}))
    extra_meta = {}
    if args.fuse_on:
        from streamwatch.model.fusion import META_FUSION
        from streamwatch.train.export import fit_fusion_on

        fusion, report = fit_fusion_on(model, args.fuse_on, geom, threads=args.threads, hidden=hidden,
                                       every=args.fuse_every, progress=True, members=members)
        extra_meta[META_FUSION] = fusion.to_json()
        training["fusion"] = report
        print(json.dumps({"fusion": report}))
    meta = export_onnx(model, geom, args.out, args.variant, version=args.version, training=training,
                       extra_meta=extra_meta)
    if args.state_dict:
        save_state_dict(model, args.state_dict)
    print(json.dumps({"onnx": str(args.out), "state_dict": str(args.state_dict) if args.state_dict else None,
                      "version": meta["streamwatch.version"], "geometry": json.loads(meta["streamwatch.geometry"])}))
    return 0


def cmd_dataset_video(args: argparse.Namespace) -> int:
    from streamwatch.train.video import build_video_samples

    summary = build_video_samples(args.data, args.split, args.out, seed=args.seed, seconds=args.seconds,
                                  every=args.every, max_width=args.max_width, workers=args.workers)
    print(json.dumps(summary))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from streamwatch.train.explain import explain

    res = explain(args.image, args.out, model_path=args.model, variant=args.variant, geometry=_geometry(args),
                  target=args.target, layer=args.layer)
    print(json.dumps(res))
    return 0


def _add_model_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="eca_1", help="network variant for .pt checkpoints (default eca_1)")
    p.add_argument("--size", type=int, default=112, help="view size S for .pt checkpoints (default 112)")
    p.add_argument("--tiles", type=int, default=2, help="native-resolution tiles for .pt checkpoints (default 2)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add dataset / train / evaluate / explain / export to the streamwatch CLI."""
    VARIANTS = ("mobilenet_v2", "eca_1", "eca_2", "eca_3", "eca_4")  # as in model.network; no torch import here

    p = subparsers.add_parser("dataset", help="build the training dataset from footage")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser("build", help="frames from videos and stills -> degraded, labelled JPEGs split by source file")
    b.add_argument("--src", type=Path, required=True, help="folder of footage (videos/, stills/, optional MANIFEST.tsv)")
    b.add_argument("--out", type=Path, required=True, help="output folder (train/val/test/<class>/*.jpg)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--train-per-class", type=int, default=1500)
    b.add_argument("--val-per-class", type=int, default=150)
    b.add_argument("--test-per-class", type=int, default=300)
    b.add_argument("--first-index", type=int, default=0,
                   help="start at sample N of each class: with the same --seed (same split by source file) a second "
                        "folder gets new samples that continue the first dataset instead of repeating it")
    b.add_argument("--coded-noise", type=float, default=0.0,
                   help="share of gaussian_noise samples that also get H.264-like coding loss after the noise (default 0)")
    b.add_argument("--night-share", type=float, default=0.0,
                   help="share of normal samples rendered as a colour camera at night (dark, mild sensor noise; default 0)")
    b.add_argument("--paired", action="store_true",
                   help="every 8 consecutive samples (one per class) degrade the same picture, so scenes carry no "
                        "label information (for training a network that must not learn its sources)")
    b.add_argument("--osd", type=float, default=0.0,
                   help="share of samples with a CCTV on-screen display (date/time, camera name) drawn under the "
                        "fault or, for optical/sensor faults, on top of it (default 0)")
    b.add_argument("--recolour", type=float, default=0.0,
                   help="share of pictures (of every class) shown in other colours before the fault: hues turned "
                        "around the grey axis, greys and whites kept, so a dominant colour alone is not a cast (default 0)")
    b.add_argument("--upscale", type=float, default=0.0,
                   help="share of pictures from a low-resolution camera (CIF/D1) shown 1.4-2.6x enlarged, half of "
                        "them with the fault made before the enlargement (default 0)")
    b.add_argument("--upscale-fault-first", type=float, default=0.5,
                   help="share of the upscaled pictures whose fault is made before the enlargement (default 0.5)")
    b.add_argument("--upscale-max", type=float, default=2.6, help="largest enlargement of --upscale (default 2.6)")
    b.add_argument("--near-minimum", type=float, default=0.0,
                   help="share of overexposed, blurred, color_cast, noise and salt_pepper samples made between the "
                        "issue's minimum severity and about 1.5x it (default 0)")
    b.add_argument("--downscale", type=float, default=0.0,
                   help="share of pictures whose fault is made at a camera resolution 1.4-3x the output width and "
                        "shrunk afterwards (averages noise and impulses down; default 0)")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_dataset_build)
    v = dsub.add_parser("video", help="one split's sources -> fault clips through H.264 -> decoded frames as JPEGs "
                                      "(OUT/<class>/; to fit the fusion on faults as a camera feed shows them)")
    v.add_argument("--data", type=Path, required=True, help="dataset folder from 'dataset build' (its split's sources)")
    v.add_argument("--split", default="train", choices=("train", "val", "test"))
    v.add_argument("--out", type=Path, required=True, help="output folder (<class>/*.jpg, .clips/, video_samples.json)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2 s)")
    v.add_argument("--every", type=int, default=6, help="keep every n-th decoded frame (default 6)")
    v.add_argument("--max-width", type=int, default=960)
    v.add_argument("--workers", type=int, default=2)
    v.set_defaults(func=cmd_dataset_video)

    sc = dsub.add_parser("scenes", help="render clean procedural scenes as a footage folder (OUT/stills/, "
                                        "OUT/MANIFEST.tsv) for 'dataset build --src OUT'")
    sc.add_argument("--out", type=Path, required=True, help="footage folder to write")
    sc.add_argument("--count", type=int, default=60, help="number of scenes (default 60)")
    sc.add_argument("--first", type=int, default=0, help="seed of the first scene; scene N is always the same picture")
    sc.add_argument("--width", type=int, default=1920)
    sc.add_argument("--height", type=int, default=1080)
    sc.add_argument("--version", type=int, choices=(1, 2, 3), default=None,
                    help="renderer version (default 1: level horizon and axis-aligned boxes, what the shipped fusion "
                         "was fitted on; 2: none level; 3: some level; streamwatch/train/scenes.py)")
    sc.set_defaults(func=cmd_dataset_scenes)

    p = subparsers.add_parser("train", help="train a fault classifier (needs torch)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder from 'dataset build'")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, log.jsonl, curves.png")
    p.add_argument("--variant", choices=VARIANTS, default="eca_1")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--tiles", type=int, default=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=0, help="use only N training samples (reduced budgets)")
    p.add_argument("--time-budget-min", type=float, default=0.0, help="wall-clock budget: the LR schedule anneals by time as well as steps and training stops when it is used up")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (a state dict such as best.pt) instead of random ones")
    p.add_argument("--no-resume", action="store_true", help="ignore <out>/last.pt")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate", help="accuracy / confusion of a model on DIR/<class>/ images")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: shipped) or .pt checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, default=None, help="write a confusion-matrix PNG")
    p.add_argument("--predictions", type=Path, default=None, metavar="CSV",
                   help="write one row per image: file, true and predicted class, confidence, every class's probability")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classical", action="store_true", help="evaluate the classical statistics fallback instead of a model")
    p.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "openvino", "openvino-bf16"),
                   help="inference engine, as model.runtime in the daemon's config")
    p.add_argument("--no-fusion", action="store_true",
                   help="the network alone, without the whole-frame measurements fused in (see docs/results.md)")
    p.add_argument("--quiet", action="store_true")
    _add_model_shape(p)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("export", help="torch checkpoint -> ONNX with metadata (+ plain state dict)")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=DEFAULT_ASSETS / "model.onnx")
    p.add_argument("--state-dict", type=Path, default=None, help="also save the plain state dict here")
    p.add_argument("--data", type=Path, default=None, help="dataset folder, for the training-data summary")
    p.add_argument("--version", default=None)
    p.add_argument("--calibrate-on", type=Path, default=None,
                   help="validation folder (DIR/<class>/): fit per-class logit offsets that maximise its accuracy and fold them into the classifier bias")
    p.add_argument("--fuse-on", type=Path, action="append", default=None,
                   help="training/validation folder (DIR/<class>/; repeat for several): fit the fusion of network and "
                        "whole-frame measurements (streamwatch.model.fusion) on them and store it in the model. "
                        "Never the test split")
    p.add_argument("--fuse-every", type=int, default=1, help="use every n-th image of each --fuse-on folder (default 1)")
    p.add_argument("--fusion-hidden", type=int, default=None,
                   help="hidden units of the fusion (0 = logistic regression; default: streamwatch.train.export.FUSION_HIDDEN)")
    p.add_argument("--fusion-members", type=int, default=None,
                   help="fusion fits with different seeds averaged into the shipped one (needs --fusion-hidden > 0; "
                        "default: streamwatch.train.export.FUSION_MEMBERS)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for calibration and fusion (default 2)")
    _add_model_shape(p)
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("explain", help="Grad-CAM overlay with predicted class and confidence")
    p.add_argument("image", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help=".pt state dict (default: shipped assets/model.pt)")
    p.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--layer", type=int, default=-1, help="index into backbone.features (default: last)")
    _add_model_shape(p)
    p.set_defaults(func=cmd_explain)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamwatch", description="streamwatch training tools")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
