#!/usr/bin/env bash
# Rebuild, from ../shared/data/train alone, the datasets the shipped model's fusion was fitted on
# and the test sets docs/results.md reports - on a machine that has none of them (every work
# session starts on a fresh one). Deterministic: the same seed gives the same pictures (session 23
# found a rebuilt ds_v3/test identical, file for file, to the split the shipped figures were
# measured on; session 24 rebuilt it twice, identical again).
#
#   bash scripts/rebuild-data.sh OUT [PART ...]        PART: fusion (default: fusion tests) | tests | quick | caches
#
#   quick   ds_v3 (train, val, test) and the procedural ds_p3 / ds_p3b: enough for fusion
#           experiments side by side (session 24: 6.5 + 1 + 11 + 1 + 22 min, the last two on shared cores)
#   fusion  quick + ds_o3 (OSD), ds_h3 (recoloured OSD) and ds_v3v (H.264 video samples): all 11
#           folders `streamwatch export --fuse-on` used for the shipped model (about 75 min more; the
#           video samples alone take about 40)
#   tests   ds_ot3, ds_mt3, ds_ut3, ds_dt3 (test pictures with an OSD, near-minimum faults,
#           enlarged, shrunk) and ind2 / indlow (faults of bench/independent_faults.py)
#   caches  with fusion: beside the builds, fill the export's caches of the 11 fusion folders (the
#           shipped network's probabilities, the fusion's measurements) as each is finished
#           (scripts/fill_fusion_caches.py; session 27) - `streamwatch export --fuse-on ...` then only fits
#
# Known difference: the shipped fusion's ds_p3 was rendered by a scratch twin of
# `streamwatch dataset scenes` whose file names grouped ten scenes per split group; the module
# renders the same 60 pictures under other names, so ds_p3's split by scene differs from the
# shipped one (ds_p3b is the module's own). Export with them: docs/results.md, session 24.
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bash scripts/rebuild-data.sh OUT [quick|fusion|tests ...]}")  # before the cd below
shift
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
PARTS=${*:-fusion tests}
SRC=../shared/data/train
mkdir -p "$OUT"
# build SOURCE ARGS...: one `dataset build` at seed 0, logged
build() { local src=$1; shift; echo "==> $(date -u +%H:%M:%S) dataset build --src $src $*"; streamwatch dataset build --src "$src" --seed 0 "$@"; }
# each step is skipped when the file it writes last exists, so an interrupted run can be started again
done_marker() { [ -f "$1/dataset.json" ]; }
ds_v3() { done_marker "$OUT/ds_v3" || build "$SRC" --out "$OUT/ds_v3" --train-per-class 1500 --val-per-class 150 --test-per-class 300; }

quick() {
  ds_v3
  [ -f "$OUT/proc/MANIFEST.tsv" ] || streamwatch dataset scenes --out "$OUT/proc" --first 0 --count 60
  done_marker "$OUT/ds_p3" || build "$OUT/proc" --out "$OUT/ds_p3" --train-per-class 1200 --val-per-class 150 --test-per-class 150
  [ -f "$OUT/proc2/MANIFEST.tsv" ] || streamwatch dataset scenes --out "$OUT/proc2" --first 60 --count 120
  done_marker "$OUT/ds_p3b" || build "$OUT/proc2" --out "$OUT/ds_p3b" --train-per-class 2400 --val-per-class 300 --test-per-class 300
}

fusion() {
  quick
  done_marker "$OUT/ds_o3" || build "$SRC" --out "$OUT/ds_o3" --train-per-class 1500 --val-per-class 150 --test-per-class 0 \
    --first-index 7000 --paired --coded-noise 0.4 --osd 0.6
  done_marker "$OUT/ds_h3" || build "$SRC" --out "$OUT/ds_h3" --train-per-class 1500 --val-per-class 150 --test-per-class 0 \
    --first-index 14000 --paired --coded-noise 0.4 --osd 0.6 --recolour 0.4
  for split in train val; do
    [ -f "$OUT/ds_v3v/$split/video_samples.json" ] || streamwatch dataset video --data "$OUT/ds_v3" --split "$split" --out "$OUT/ds_v3v/$split"
  done
}

tests() {
  ds_v3  # its test normals are what ind2 / indlow degrade
  local t="--train-per-class 0 --val-per-class 0 --test-per-class 300"
  # shellcheck disable=SC2086
  {
    done_marker "$OUT/ds_ot3" || build "$SRC" --out "$OUT/ds_ot3" $t --osd 1.0
    done_marker "$OUT/ds_mt3" || build "$SRC" --out "$OUT/ds_mt3" $t --near-minimum 1.0
    done_marker "$OUT/ds_ut3" || build "$SRC" --out "$OUT/ds_ut3" $t --upscale 1.0
    done_marker "$OUT/ds_dt3" || build "$SRC" --out "$OUT/ds_dt3" $t --downscale 1.0
  }
  [ -f "$OUT/ind2/params.jsonl" ] || python bench/independent_faults.py --normals "$OUT/ds_v3/test/normal" --out "$OUT/ind2" --seed 0
  [ -f "$OUT/indlow/params.jsonl" ] || python bench/independent_faults.py --normals "$OUT/ds_v3/test/normal" --out "$OUT/indlow" --seed 0 --low-res
}

for part in $PARTS; do
  case "$part" in quick|fusion|tests|caches) ;; *) echo "unknown part: $part (quick, fusion, tests, caches)" >&2; exit 2 ;; esac
done
CACHES_PID=
case " $PARTS " in
  *" caches "*)
    case " $PARTS " in *" fusion "*) ;; *) echo "caches needs fusion (it waits for the fusion folders)" >&2; exit 2 ;; esac
    python scripts/fill_fusion_caches.py "$OUT" &
    CACHES_PID=$! ;;
esac
for part in $PARTS; do
  case "$part" in
    caches) ;;  # started above, beside the builds
    quick) quick ;;
    fusion) fusion ;;
    tests) tests ;;
  esac
done
if [ -n "$CACHES_PID" ]; then
  echo "==> $(date -u +%H:%M:%S) waiting for the caches"
  wait "$CACHES_PID"
fi
echo "==> $(date -u +%H:%M:%S) done: $OUT"
