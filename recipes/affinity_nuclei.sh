#!/usr/bin/env bash
# Recipe for the shipped `affinity-nuclei`: pixel-embedded affinity (16-D L2-normalised
# embedding, affinities at shifts 1, 3, 9, 27 px along each axis, class-balanced squared error,
# cross-view term on a perturbed copy, foreground head) on the library UNet (16-128 features),
# trained on the train split of dsb2018_fluo, then packed with the mutex-watershed knobs tuned
# on val by recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/affinity_nuclei.sh [--resume]
# Measured on 2 CPU cores, side by side with affinity-cells (one thread each): ~1.8 it/s.
set -euo pipefail
DATA=${DATA:-../shared/data/dsb2018_fluo}
OUT=${OUT:-runs/affinity-nuclei}
NAME=affinity-nuclei
NOTES="Trained on 2 CPU cores for 7000 iterations (batch 4, 128 px crops), side by side with the other affinity model. Foreground: the reference segmented inside the ground-truth foreground mask; this model predicts its own foreground with an extra head (trained on the known pixels) and the mutex watershed runs inside it (knob fg_threshold). Affinities are supervised at full resolution only (no deep supervision at coarser decoder scales)."
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method affinity --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality fluorescence \
    --description "Pixel-embedded affinity (16-D embedding, offsets 1/3/9/27 px) on a UNet with a foreground head, DSB2018 fluorescence nuclei; mutex watershed" \
    --recipe recipes/affinity_nuclei.sh \
    --set width=16 --set depth=4 --set embedding_dim=16 \
    --iterations 7000 --batch-size 4 --patch-size 128 --lr 1e-3 --val-every 1000 --seed 0 "$@"
fi
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$DATA" --half \
  --notes "$NOTES" \
  --grid fg_threshold=0.4,0.5,0.6 --grid merge_size=0,20,50 --grid min_size=15,30 \
  --grid stride=2,5
