#!/usr/bin/env bash
# Recipe for the shipped `flows-cells`: Omnipose-style flows (eikonal distance to the boundary,
# its unit gradient, a boundary map) on the library UNet (16-256 features, depth 5 for the
# ~100 px phase-contrast cells), trained on the train split of usiigaci_phase at full
# resolution with 256 px crops (3600 iterations, then resumed to 6000), then packed with the flow-dynamics knobs tuned on val by
# recipes/pack_model.py. The final checkpoint is used (cosine schedule to 0).
# Run from the repository root: bash recipes/flows_cells.sh [--resume]
set -euo pipefail
DATA=${DATA:-../shared/data/usiigaci_phase}
OUT=${OUT:-runs/flows-cells}
NAME=flows-cells
NOTES="Trained on 2 CPU cores (batch 2, 256 px crops): 3600 iterations (cosine schedule to 0, ~23 min), then resumed to 6000 iterations (the cosine schedule re-stretched over 6000, so a warm restart at about a third of the peak rate; ~15 min more). Still a short run. Departures from Omnipose: fast-sweeping eikonal distance, a loss with the flow, distance and boundary terms only (no angle, norm, derivative or divergence terms), bilinear sampling, no DBSCAN."
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method flows --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality phase-contrast \
    --description "Omnipose-style flows (distance, unit flow, boundary) on a UNet, Usiigaci phase-contrast cells; flow dynamics" \
    --recipe recipes/flows_cells.sh \
    --set width=16 --set depth=5 \
    --iterations 3600 --batch-size 2 --patch-size 256 --lr 1e-3 --val-every 300 --seed 0 "$@"
  # Second stage, as the shipped model was made: the same run resumed to 6000 iterations.
  napari-instseg train --method flows --data "$DATA" --split train --val-split "" \
    --output "$OUT" --name "$NAME" --modality phase-contrast \
    --description "Omnipose-style flows (distance, unit flow, boundary) on a UNet, Usiigaci phase-contrast cells; flow dynamics" \
    --recipe recipes/flows_cells.sh \
    --set width=16 --set depth=5 \
    --iterations 6000 --batch-size 2 --patch-size 256 --lr 1e-3 --val-every 300 --seed 0 --resume
fi
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$DATA" --half \
  --notes "$NOTES" \
  --grid mask_threshold=-1.0,0.0,1.0 --grid flow_threshold=0.0,0.4,0.8 --grid min_size=100,400
