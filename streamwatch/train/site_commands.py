"""``streamwatch trainer``: one site refresh (see streamwatch/train/site.py, docs/site-adaptation.md).

Registered by ``streamwatch.cli``; nothing here imports torch at module level
(the daemon's CLI loads this module too).

Exit status: 0 when the run completed (decision promoted, rejected, skipped or
not_promoted - a rejected candidate is the gate working, not a failure),
2 when it could not run (bad config, no base data, no state dict, another run
in progress), 1 on an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_trainer(args: argparse.Namespace) -> int:
    from streamwatch.config import ConfigError, load_config
    from streamwatch.logsetup import configure_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(config.log.level, config.log.format)
    if args.threads:
        config.trainer.threads = args.threads
    # Cap BLAS/OpenMP pools before torch is imported (torch.set_num_threads follows in refresh()).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(config.trainer.threads))

    import structlog

    from streamwatch.train.site import TrainerError, lower_priority, refresh

    log = structlog.get_logger("streamwatch.trainer")
    if not args.no_nice:
        log.info("trainer_priority", **lower_priority(config.trainer.nice), threads=config.trainer.threads)
    progress = False if args.quiet else None
    try:
        report = refresh(config, candidate=args.candidate, dry_run=args.dry_run, progress=progress,
                         save_candidate=args.save_candidate)
    except TrainerError as exc:
        log.error("trainer_failed", error=str(exc))
        print(f"trainer: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(f"{report['decision']}: {report['reason']}\nreport: {report.get('report')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trainer",
        help="refresh the model from the site's own cameras (fine-tune, gate, promote)",
        description="One site refresh: dataset from the reservoir (+ operator labels, + base replay), fine-tune the "
                    "current model, evaluate candidate vs current on held-out site data and the base test set, "
                    "promote only if the gate passes. Runs at low CPU and I/O priority.",
    )
    p.add_argument("--config", "-c", required=True, help="the daemon's config (state_dir, reservoir, trainer)")
    p.add_argument("--once", action="store_true",
                   help="run one refresh and exit (the only mode; schedule it with streamwatch-trainer.timer)")
    p.add_argument("--candidate", type=Path, default=None,
                   help="gate this ONNX model instead of fine-tuning one (its .pt beside it is kept on promotion)")
    p.add_argument("--dry-run", action="store_true", help="evaluate and decide, but never promote")
    p.add_argument("--save-candidate", type=Path, default=None, metavar="DIR",
                   help="keep a copy of the fine-tuned candidate (.onnx + .pt) in DIR whatever the decision")
    p.add_argument("--threads", type=int, default=0, help="override trainer.threads")
    p.add_argument("--no-nice", action="store_true", help="keep the current CPU/IO priority")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=cmd_trainer)
