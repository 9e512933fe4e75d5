#!/usr/bin/env bash
# Recipe for the shipped `generalist-nuclei`: PatchPerPix (ppp+dec, as `patchperpix-nuclei`),
# warm-started from `patchperpix-nuclei` and trained on the train splits of dsb2018_fluo AND
# dsb2018_stained (each folder weighs the same), with the stained and brightfield images mapped
# into the fluorescence appearance the way segmenting maps a user's image (`--appearance auto`:
# haematoxylin unmixing for stained colour, inversion for grey brightfield), and augmentation
# for what users bring: crops rescaled 0.67-1.5x (diameter="auto" resizes images to the working
# scale, so the network needs robustness around it, not across a 4x range), gamma, blur, noise,
# inversion, intensity scale/shift. Then packed with the patch_consensus knobs tuned on the val
# splits of both sets (each weighing the same).
# Run from the repository root: bash recipes/generalist_nuclei.sh [--resume]
# Measured on 2 CPU cores (one torch thread, side by side with benchmarks).
set -euo pipefail
FLUO=${FLUO:-../shared/data/dsb2018_fluo}
STAINED=${STAINED:-../shared/data/dsb2018_stained}
OUT=${OUT:-recipes/runs/generalist-nuclei}
NAME=generalist-nuclei
ITERATIONS=${ITERATIONS:-4500}
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  napari-instseg train --method patchperpix --data "$FLUO" --data "$STAINED" --split train \
    --val-split val --output "$OUT" --name "$NAME" --modality fluorescence --appearance auto \
    --init patchperpix-nuclei \
    --description "Generalist nuclei model: PatchPerPix (ppp+dec, 25x25 patches) on a UNet with a foreground head, trained on fluorescence, stained (H&E-like) and brightfield nuclei; images are mapped to bright-on-dark and resized to the working diameter before the network" \
    --recipe recipes/generalist_nuclei.sh \
    --set width=16 --set depth=4 --set patch_size=25 --set code_units=32 \
    --augment zoom=1.5 --augment gamma=1.5 --augment blur_prob=0.2 --augment noise=0.03 \
    --augment invert_prob=0.1 \
    --iterations "$ITERATIONS" --batch-size 4 --patch-size 128 --lr 5e-4 --val-every 1500 \
    --seed 0 "$@"
fi
# Pack: knobs tuned on both val splits (each folder weighs the same; the parent's fc_threshold,
# merge_size and mws kept), test per folder and per kind of image (stained_colour,
# brightfield_grey), float16 weights; then the object size from the training masks and the
# working diameter measured on resized val images of both sets, written to the card.
# The shipped model is this recipe run to its end (4500 iterations, over two sessions with
# `--resume`: val AP@0.5 0.747 at 3000, 0.746 at 4500; tuned val AP@0.5 0.679 -> 0.680).
python recipes/pack_model.py "$OUT/latest.json" --name "$NAME" --data "$FLUO" --data "$STAINED" \
  --appearance auto --by-kind --half \
  --notes "Warm-started from patchperpix-nuclei; dsb2018_fluo and dsb2018_stained train splits weighing the same, stained and brightfield images mapped by --appearance auto; augmentation: zoom 1.5, gamma 1.5, blur p 0.2, noise 0.03, inversion p 0.1; lr 5e-4 cosine over $ITERATIONS iterations, batch 4, 128 px crops, 2 CPU cores." \
  --grid patch_threshold=0.5,0.7 --grid min_size=15,30 --grid fc_threshold=0.7 \
  --grid merge_size=30 --grid mws=true
python recipes/object_size.py "$NAME"
python benchmarks/scale.py --working --write --every 3 --ratios 1.0 --models "$NAME"
