#!/usr/bin/env bash
# Recipe for the shipped `embedseg-nuclei`: EmbedSeg heads (offsets, sigma, seed) on the library
# UNet (24-192 features), trained on the train split of dsb2018_fluo, then packed with knobs
# tuned on val by recipes/pack_model.py. Two stages: 4000 iterations (cosine schedule to 0),
# then a warm restart resumed to 10000 iterations; the final checkpoint is used.
# Run from the repository root: bash recipes/embedseg_nuclei.sh [--resume]
# Measured on 2 CPU cores: stage 1 ~1.6 it/s sharing the cores with another training (45 min),
# stage 2 ~3 it/s alone (37 min). More iterations or a GPU make it stronger.
set -euo pipefail
DATA=${DATA:-../shared/data/dsb2018_fluo}
OUT=${OUT:-runs/embedseg-nuclei}
napari-instseg train --method embedseg --data "$DATA" --split train --val-split "" \
  --output "$OUT" --name embedseg-nuclei --modality fluorescence \
  --description "EmbedSeg (offsets to medoid + learnt bandwidth + seediness) on a UNet, DSB2018 fluorescence nuclei" \
  --recipe recipes/embedseg_nuclei.sh \
  --set width=24 --set depth=4 \
  --iterations 4000 --batch-size 4 --patch-size 128 --lr 1e-3 --val-every 500 --seed 0 "$@"
# Stage 2: resume from stage 1's latest checkpoint with a longer schedule (warm restart).
napari-instseg train --method embedseg --data "$DATA" --split train --val-split "" \
  --output "$OUT" --name embedseg-nuclei --modality fluorescence \
  --description "EmbedSeg (offsets to medoid + learnt bandwidth + seediness) on a UNet, DSB2018 fluorescence nuclei" \
  --recipe recipes/embedseg_nuclei.sh \
  --set width=24 --set depth=4 \
  --iterations 10000 --batch-size 4 --patch-size 128 --lr 1e-3 --val-every 500 --seed 0 --resume
# Pack: tune the seeds knobs on val, measure test with float16 weights, write the zoo files.
python recipes/pack_model.py "$OUT/latest.json" --name embedseg-nuclei --data "$DATA" --half \
  --grid seed_threshold=0.85,0.9,0.95 --grid fg_threshold=0.5,0.6,0.7 --grid min_size=15,25,40
