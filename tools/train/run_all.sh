#!/usr/bin/env bash
# Every stage of the model pipeline in order:
#   corpus -> tokenizer -> target -> draft -> distil draft -> Medusa -> MTP -> report -> export -> goldens
# Each stage skips finished work (done.json / up-to-date outputs) or resumes from its newest checkpoint,
# so re-running this script after an interruption continues where it stopped. A training stage that was
# stopped by a signal checkpoints and exits 0 without done.json; the script then stops here (exit 3).
#
# Environment: STATE_DIR (default /root/specserve-train), DEVICE (cpu|cuda, default cpu), THREADS (default 2),
# MODELS_DIR (default models), GOLDEN (default Tests/Fixtures/logits/specserve-code.json).
# Extra arguments go to every training stage (train_lm.py x2, distill_draft.py, train_medusa.py,
# train_mtp.py); use only flags they all accept: --precision, --ckpt-minutes, --log-every, --eval-every,
# --eval-seqs, --tokens (the last sets every stage's budget: for trials only).
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE_DIR=${STATE_DIR:-/root/specserve-train}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
MODELS_DIR=${MODELS_DIR:-models}
GOLDEN=${GOLDEN:-Tests/Fixtures/logits/specserve-code.json}
common=(--state-dir "$STATE_DIR" --device "$DEVICE" --threads "$THREADS")

finished() {  # stop unless <run>/done.json exists
  if [ ! -f "$STATE_DIR/$1/done.json" ]; then
    echo "run_all: $STATE_DIR/$1 is not finished (stopped early); run this script again to resume" >&2
    exit 3
  fi
}

python3 tools/train/corpus.py
python3 tools/train/train_tokenizer.py
python3 tools/train/train_lm.py --preset target "${common[@]}" "$@";  finished target
python3 tools/train/train_lm.py --preset draft "${common[@]}" "$@";   finished draft
python3 tools/train/distill_draft.py "${common[@]}" "$@";             finished draft-distill
python3 tools/train/train_medusa.py "${common[@]}" "$@";              finished medusa
python3 tools/train/train_mtp.py "${common[@]}" "$@";                 finished mtp
python3 tools/train/acceptance_report.py "${common[@]}"
python3 tools/train/export_family.py --state-dir "$STATE_DIR" --out-dir "$MODELS_DIR" --require-all
python3 tools/fixtures/make_model_goldens.py "$MODELS_DIR/specserve-code" --out "$GOLDEN"
