#!/usr/bin/env bash
# Recipe for the shipped `embedseg-nuclei`: EmbedSeg heads (offsets, sigma, seed) on the library
# UNet (24-192 features), trained on the train split of dsb2018_fluo, then packed with knobs
# tuned on val by recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/embedseg_nuclei.sh [--resume]
# Measured on 2 CPU cores, sharing them with another training: ~1.6 iterations per second (45
# minutes). More iterations (e.g. --iterations 20000) or a GPU make it stronger.
set -euo pipefail
DATA=${DATA:-../shared/data/dsb2018_fluo}
OUT=${OUT:-runs/embedseg-nuclei}
napari-instseg train --method embedseg --data "$DATA" --split train --val-split "" \
  --output "$OUT" --name embedseg-nuclei --modality fluorescence \
  --description "EmbedSeg (offsets to medoid + learnt bandwidth + seediness) on a UNet, DSB2018 fluorescence nuclei" \
  --recipe recipes/embedseg_nuclei.sh \
  --set width=24 --set depth=4 \
  --iterations 4000 --batch-size 4 --patch-size 128 --lr 1e-3 --val-every 500 --seed 0 "$@"
# Pack: tune the seeds knobs on val, measure test with float16 weights, write the zoo files.
python recipes/pack_model.py "$OUT/latest.json" --name embedseg-nuclei --data "$DATA" --half \
  --grid seed_threshold=0.85,0.9,0.95 --grid fg_threshold=0.5,0.6,0.7 --grid min_size=15,25,40
