#!/usr/bin/env bash
# Reproduce a shipped model's test-split numbers through the CLI alone:
# segment every test image of its dataset, then evaluate against the ground truth.
# Usage: bash recipes/verify_card.sh MODEL DATASET_DIR [OUT_DIR] [extra segment options]
# Example: bash recipes/verify_card.sh threeclass-nuclei ../shared/data/dsb2018_fluo
set -euo pipefail
MODEL=$1
DATA=$2
OUT=${3:-runs/verify-$MODEL}
shift $(( $# >= 3 ? 3 : 2 ))
mapfile -t TEST < <(python - "$DATA" <<'PY'
import csv, sys
from pathlib import Path
root = Path(sys.argv[1])
with open(root / "metadata.csv", newline="") as f:
    for row in csv.DictReader(f):
        if row["split"].strip() == "test":
            print(root / "images" / f"{row['name']}.tif")
PY
)
rm -rf "$OUT"
napari-instseg segment "${TEST[@]}" --model "$MODEL" --output "$OUT" "$@" > /dev/null 2>&1
napari-instseg evaluate "$OUT" "$DATA/masks" 2>/dev/null | sed -n "1p;\$p"
# A model trained on several datasets has each one's test numbers under test_by_data.
echo "card (test): $(napari-instseg models --json | python -c "
import json, sys
m = {c['name']: c['metrics'] for c in json.load(sys.stdin)}['$MODEL']
print(m.get('test_by_data', {}).get('$(basename "$DATA")', m.get('test')))")"
