#!/usr/bin/env bash
# Recipe for the shipped `patchperpix-cells`: PatchPerPix, ppp+dec variant (a 32-unit code
# per pixel, a jointly trained two-layer decoder to 25x25 patch logits, patch BCE at up to
# 1024 sampled object pixels per crop, foreground head) on the library UNet (16-256 features),
# trained on the train split of usiigaci_phase, then packed with the patch_consensus knobs tuned
# on val by recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/patchperpix_cells.sh [--resume]
# Measured on 2 CPU cores, side by side with patchperpix-nuclei (one thread each).
set -euo pipefail
DATA=${DATA:-../shared/data/usiigaci_phase}
OUT=${OUT:-runs/patchperpix-cells}
NAME=patchperpix-cells
ITERATIONS=${ITERATIONS:-6000}
NOTES="Trained on 2 CPU cores for $ITERATIONS iterations (batch 2, 256 px crops), side by side with patchperpix-nuclei; the paper trained 500k GPU iterations. ppp+dec with a 32-unit code and a two-layer perceptron decoder (the paper: 256 units, convolutional decoder). Consensus votes are taken on pixel pairs at power-of-two distances along the axes and diagonals, not on every pair in the patch."
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method patchperpix --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality phase-contrast \
    --description "PatchPerPix (ppp+dec, 25x25 patches) on a UNet with a foreground head, Usiigaci phase-contrast cells; patch consensus assembly" \
    --recipe recipes/patchperpix_cells.sh \
    --set width=16 --set depth=5 --set patch_size=25 --set code_units=32 \
    --iterations "$ITERATIONS" --batch-size 2 --patch-size 256 --lr 1e-3 --val-every 500 --seed 0 "$@"
fi
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$DATA" --half \
  --notes "$NOTES" \
  --grid patch_threshold=0.5,0.7 --grid fc_threshold=0.5,0.7 --grid mws=true,false \
  --grid merge_size=0,1000 --grid min_size=200,400
