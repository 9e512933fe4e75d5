#!/usr/bin/env bash
# Recipe for the shipped `affinity-cells`: pixel-embedded affinity (16-D L2-normalised
# embedding, affinities at shifts 1, 3, 9, 27 px along each axis, class-balanced squared error,
# cross-view term on a perturbed copy, foreground head) on the library UNet (16-256 features,
# depth 5 for the ~100 px phase-contrast cells), trained on the train split of usiigaci_phase
# at full resolution with 256 px crops, then packed with the mutex-watershed knobs tuned on
# val by recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/affinity_cells.sh [--resume]
# Measured on 2 CPU cores, side by side with affinity-nuclei (one thread each): ~1.3 s/it.
set -euo pipefail
DATA=${DATA:-../shared/data/usiigaci_phase}
OUT=${OUT:-runs/affinity-cells}
NAME=affinity-cells
NOTES="Trained on 2 CPU cores for 3500 iterations (batch 2, 256 px crops), side by side with the other affinity model. Foreground: the reference segmented inside the ground-truth foreground mask; this model predicts its own foreground with an extra head (trained on the known pixels) and the mutex watershed runs inside it (knob fg_threshold). Affinities are supervised at full resolution only (no deep supervision at coarser decoder scales)."
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method affinity --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality phase-contrast \
    --description "Pixel-embedded affinity (16-D embedding, offsets 1/3/9/27 px) on a UNet with a foreground head, Usiigaci phase-contrast cells; mutex watershed" \
    --recipe recipes/affinity_cells.sh \
    --set width=16 --set depth=5 --set embedding_dim=16 \
    --iterations 3500 --batch-size 2 --patch-size 256 --lr 1e-3 --val-every 500 --seed 0 "$@"
fi
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$DATA" --half \
  --notes "$NOTES" \
  --grid fg_threshold=0.4,0.5,0.6 --grid merge_size=200,1000,2000 --grid min_size=100,400 \
  --grid stride=2,5
