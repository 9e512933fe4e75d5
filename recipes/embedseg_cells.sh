#!/usr/bin/env bash
# Recipe for the shipped `embedseg-cells`: EmbedSeg heads on the library UNet (24-384 features,
# depth 5 for the ~100 px phase-contrast cells), trained on the train split of usiigaci_phase at
# full resolution with 256 px crops, then packed with knobs tuned on val by
# recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/embedseg_cells.sh [--resume]
# Measured on 2 CPU cores, sharing them with another training: ~1.4 s per iteration (47 minutes).
# More iterations or a GPU make it stronger.
set -euo pipefail
DATA=${DATA:-../shared/data/usiigaci_phase}
OUT=${OUT:-runs/embedseg-cells}
napari-instseg train --method embedseg --data "$DATA" --split train --val-split "" \
  --output "$OUT" --name embedseg-cells --modality phase-contrast \
  --description "EmbedSeg (offsets to medoid + learnt bandwidth + seediness) on a UNet, Usiigaci phase-contrast cells" \
  --recipe recipes/embedseg_cells.sh \
  --set width=24 --set depth=5 \
  --iterations 2000 --batch-size 2 --patch-size 256 --lr 1e-3 --val-every 250 --seed 0 "$@"
# Pack: tune the seeds knobs on val, measure test with float16 weights, write the zoo files.
python recipes/pack_model.py "$OUT/latest.json" --name embedseg-cells --data "$DATA" --half \
  --grid seed_threshold=0.6,0.7,0.8,0.9 --grid fg_threshold=0.3,0.4,0.5,0.6 --grid min_size=0,100,400
