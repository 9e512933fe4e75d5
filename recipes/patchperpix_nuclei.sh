#!/usr/bin/env bash
# Recipe for the shipped `patchperpix-nuclei`: PatchPerPix, ppp+dec variant (a 32-unit code
# per pixel, a jointly trained two-layer decoder to 25x25 patch logits, patch BCE at up to
# 1024 sampled object pixels per crop, foreground head) on the library UNet (16-128 features),
# trained on the train split of dsb2018_fluo, then packed with the patch_consensus knobs tuned
# on val by recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/patchperpix_nuclei.sh [--resume]
# Measured on 2 CPU cores, side by side with patchperpix-cells (one thread each).
set -euo pipefail
DATA=${DATA:-../shared/data/dsb2018_fluo}
OUT=${OUT:-runs/patchperpix-nuclei}
NAME=patchperpix-nuclei
ITERATIONS=${ITERATIONS:-9000}
NOTES="Trained on 2 CPU cores for $ITERATIONS iterations (batch 4, 128 px crops), side by side with patchperpix-cells; the paper trained 500k GPU iterations. ppp+dec with a 32-unit code and a two-layer perceptron decoder (the paper: 256 units, convolutional decoder). Consensus votes are taken on pixel pairs at power-of-two distances along the axes and diagonals, not on every pair in the patch."
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method patchperpix --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality fluorescence \
    --description "PatchPerPix (ppp+dec, 25x25 patches) on a UNet with a foreground head, DSB2018 fluorescence nuclei; patch consensus assembly" \
    --recipe recipes/patchperpix_nuclei.sh \
    --set width=16 --set depth=4 --set patch_size=25 --set code_units=32 \
    --iterations "$ITERATIONS" --batch-size 4 --patch-size 128 --lr 1e-3 --val-every 1000 --seed 0 "$@"
fi
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$DATA" --half \
  --notes "$NOTES" \
  --grid patch_threshold=0.5,0.7 --grid fc_threshold=0.5,0.7 --grid mws=true,false \
  --grid merge_size=0,30 --grid min_size=15,30
