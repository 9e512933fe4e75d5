#!/usr/bin/env bash
# The ceiling of the fine-tuning transfer benchmark (benchmarks/finetune_transfer.py): a
# parent (embedseg-nuclei by default) trained further on the WHOLE stained_colour train split
# of dsb2018_stained, every nucleus annotated (75 images), with the images mapped as
# segmenting maps them (--appearance auto: haematoxylin unmixing). Warm-started from the
# parent, as the fine-tunes are, so the row measures what full annotation buys over a few
# objects. Not shipped: written to runs/ and packed to runs/ceiling/ for the benchmark.
# Run from the repository root: PARENT=embedseg-nuclei METHOD=embedseg bash recipes/stained_ceiling.sh
set -euo pipefail
PARENT=${PARENT:-embedseg-nuclei}
METHOD=${METHOD:-embedseg}
DATA=${DATA:-../shared/data/dsb2018_stained}
OUT=${OUT:-runs/$PARENT-stained-ceiling}
ITERATIONS=${ITERATIONS:-1500}
SET=${SET:---set width=24 --set depth=4}
napari-instseg train --method "$METHOD" --data "$DATA" --kind stained_colour --split train \
  --val-split "" --output "$OUT" --name "$PARENT-stained-ceiling" --modality fluorescence \
  --appearance auto --init "$PARENT" --recipe recipes/stained_ceiling.sh $SET \
  --iterations "$ITERATIONS" --batch-size 4 --patch-size 128 --lr 5e-4 --seed 0 "$@"
python recipes/pack_model.py "$OUT/latest.json" --name "$PARENT-stained-ceiling" --data "$DATA" \
  --appearance auto --by-kind --out runs/ceiling \
  --grid seed_threshold=0.85,0.9 --grid fg_threshold=0.5,0.6,0.7
