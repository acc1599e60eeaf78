#!/usr/bin/env bash
# Every stage of the model pipeline in order. Each stage skips finished work or resumes from its
# latest checkpoint, so this script can be re-run after an interruption.
# Extra arguments go to both train_lm.py invocations (e.g. --device cuda --threads 16).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tools/train/corpus.py
python3 tools/train/train_tokenizer.py
python3 tools/train/train_lm.py --preset target "$@"
python3 tools/train/train_lm.py --preset draft "$@"
python3 tools/train/export.py --run target --name specserve-code --out models/specserve-code
