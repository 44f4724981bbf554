#!/usr/bin/env bash
# The shipped model's export recipe (docs/results.md, sessions 22-27): the shipped network
# (streamwatch/assets/model.pt), per-class offsets checked on ds_v3/val, the evidence fusion fitted
# on the 11 folders of scripts/rebuild-data.sh's `fusion` part with the fusion settings in
# streamwatch/train/export.py - into OUTDIR/model.onnx + OUTDIR/model.pt; then
# `streamwatch evaluate` on ds_v3/test (OUTDIR/ds_v3_test.json).
#
#   bash scripts/export-shipped.sh DATA OUTDIR      DATA: rebuild-data.sh's OUT
#
# Minutes when scripts/rebuild-data.sh ran with `caches` (the export then only fits); about an
# hour of both cores without. Copy OUTDIR/model.* to streamwatch/assets/ to ship the result.
set -euo pipefail
DATA=$(realpath -m "${1:?usage: bash scripts/export-shipped.sh DATA OUTDIR}")
OUTDIR=$(realpath -m "${2:?usage: bash scripts/export-shipped.sh DATA OUTDIR}")
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
FUSE=()
for d in ds_v3/train ds_v3/val ds_v3v/train ds_v3v/val ds_o3/train ds_o3/val ds_h3/train ds_h3/val \
         ds_p3/train ds_p3/val ds_p3b/train; do
  FUSE+=(--fuse-on "$DATA/$d")
done
mkdir -p "$OUTDIR"
echo "==> $(date -u +%H:%M:%S) export"
streamwatch export --checkpoint streamwatch/assets/model.pt --out "$OUTDIR/model.onnx" --state-dict "$OUTDIR/model.pt" \
  --data "$DATA/ds_v3" --calibrate-on "$DATA/ds_v3/val" "${FUSE[@]}" --variant eca_1 --size 112 --tiles 2 --threads 2 \
  | tee "$OUTDIR/export.log"
echo "==> $(date -u +%H:%M:%S) evaluate ds_v3/test"
streamwatch evaluate --data "$DATA/ds_v3/test" --model "$OUTDIR/model.onnx" --json | tee "$OUTDIR/ds_v3_test.json"
echo "==> $(date -u +%H:%M:%S) done"
