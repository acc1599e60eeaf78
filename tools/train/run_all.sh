#!/usr/bin/env bash
# Every stage of the model pipeline in order:
#   corpus -> tokenizer -> target -> the target's own continuations (rollouts) ->
#   draft lane: draft -> distil draft -> distil the draft on the rollouts
#   head lane:  Medusa -> MTP -> fine-tune both on the rollouts
#   -> report -> export -> goldens
# Each stage skips finished work (done.json / up-to-date outputs) or resumes from its newest checkpoint,
# so re-running this script after an interruption continues where it stopped. A training stage that was
# stopped by a signal checkpoints and exits 0 without done.json; the script then stops here (exit 3).
#
# Environment: STATE_DIR (default /root/specserve-train), DEVICE (cpu|cuda, default cpu), THREADS (default 2),
# MODELS_DIR (default models), GOLDEN (default Tests/Fixtures/logits/specserve-code.json),
# LANES (1 or 2: with 2, the draft lane and the head lane run side by side after the rollouts, THREADS
# threads each), and the token budgets of the shipped family:
# TARGET_TOKENS 22e6, DRAFT_TOKENS 5e6, DISTILL_TOKENS 9e6, MEDUSA_TOKENS 2e6 (trained positions),
# MTP_TOKENS 5e6, ROLLOUT_IDS 2e6 (ids of prompts and greedy continuations; ROLLOUT_VALID_IDS 25000),
# ROLLOUT_DISTILL_TOKENS 3.5e6, MEDUSA_ROLLOUT_TOKENS 2.5e6, MTP_ROLLOUT_TOKENS 1.5e6: the schedules the shipped runs finished on, over four sessions of the 2-core CPU machine
# (the rollout fine-tunes of Medusa and MTP in a fifth, side by side with 1 thread each; distillation,
# Medusa and MTP first ran on 1.2e6 / 4e5 / 1.2e6 schedules, then resumed on longer ones:
# distillation 8e6 to 6.8 M tokens, then 12e6 to 7.8 M, then 9e6 to the end; MTP 4e6 to 3.6 M, then 5e6 to the
# end; the model cards give the exact counts).
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
LANES=${LANES:-1}
TARGET_TOKENS=${TARGET_TOKENS:-22e6}
DRAFT_TOKENS=${DRAFT_TOKENS:-5e6}
DISTILL_TOKENS=${DISTILL_TOKENS:-9e6}
MEDUSA_TOKENS=${MEDUSA_TOKENS:-2e6}
MTP_TOKENS=${MTP_TOKENS:-5e6}
ROLLOUT_IDS=${ROLLOUT_IDS:-2e6}
ROLLOUT_VALID_IDS=${ROLLOUT_VALID_IDS:-25000}
ROLLOUT_DISTILL_TOKENS=${ROLLOUT_DISTILL_TOKENS:-3.5e6}
MEDUSA_ROLLOUT_TOKENS=${MEDUSA_ROLLOUT_TOKENS:-2.5e6}
MTP_ROLLOUT_TOKENS=${MTP_ROLLOUT_TOKENS:-1.5e6}
common=(--state-dir "$STATE_DIR" --device "$DEVICE" --threads "$THREADS")

finished() {  # stop unless <run>/done.json exists
  if [ ! -f "$STATE_DIR/$1/done.json" ]; then
    echo "run_all: $STATE_DIR/$1 is not finished (stopped early); run this script again to resume" >&2
    exit 3
  fi
}

python3 tools/train/corpus.py
python3 tools/train/train_tokenizer.py
python3 tools/train/train_lm.py --preset target --tokens "$TARGET_TOKENS" "${common[@]}" "$@"; finished target
python3 tools/train/rollouts.py --split valid --tokens "$ROLLOUT_VALID_IDS" "${common[@]}"
python3 tools/train/rollouts.py --split train --tokens "$ROLLOUT_IDS" "${common[@]}"
rollouts=(--train-bin "$STATE_DIR/rollouts/train.bin")

draft_lane() {
  python3 tools/train/train_lm.py --preset draft --tokens "$DRAFT_TOKENS" "${common[@]}" "$@"; finished draft
  python3 tools/train/distill_draft.py --tokens "$DISTILL_TOKENS" "${common[@]}" "$@";        finished draft-distill
  python3 tools/train/distill_draft.py --run draft-rollouts --draft-run draft-distill \
    "${rollouts[@]}" --valid-bin "$STATE_DIR/rollouts/valid.bin" --mix-corpus 0.25 \
    --lr 3e-4 --min-lr 3e-5 --warmup-steps 20 --eval-every 100 --eval-seqs 64 \
    --tokens "$ROLLOUT_DISTILL_TOKENS" "${common[@]}" "$@";                                       finished draft-rollouts
}
head_lane() {
  python3 tools/train/train_medusa.py --tokens "$MEDUSA_TOKENS" "${common[@]}" "$@"; finished medusa
  python3 tools/train/train_mtp.py --tokens "$MTP_TOKENS" "${common[@]}" "$@";       finished mtp
  python3 tools/train/train_medusa.py --run medusa-rollouts --init-run medusa "${rollouts[@]}" \
    --lr 5e-4 --min-lr 5e-5 --warmup-steps 20 --eval-every 100 \
    --tokens "$MEDUSA_ROLLOUT_TOKENS" "${common[@]}" "$@";                                        finished medusa-rollouts
  python3 tools/train/train_mtp.py --run mtp-rollouts --init-run mtp "${rollouts[@]}" \
    --valid-bin "$STATE_DIR/rollouts/valid.bin" --mix-corpus 0.25 --lr 2e-4 --min-lr 2e-5 --warmup-steps 20 \
    --eval-every 100 --tokens "$MTP_ROLLOUT_TOKENS" "${common[@]}" "$@";                          finished mtp-rollouts
}
if [ "$LANES" = 2 ]; then
  ( draft_lane "$@" ) > "$STATE_DIR/draft-lane.log" 2>&1 & draft_pid=$!
  ( head_lane "$@" ) > "$STATE_DIR/head-lane.log" 2>&1 & head_pid=$!
  status=0
  wait "$draft_pid" || status=$?
  wait "$head_pid" || status=$?
  if [ "$status" != 0 ]; then
    echo "run_all: a lane stopped with status $status (see $STATE_DIR/{draft,head}-lane.log)" >&2
    exit "$status"
  fi
else
  draft_lane "$@"
  head_lane "$@"
fi
python3 tools/train/acceptance_report.py "${common[@]}"
python3 tools/train/export_family.py --state-dir "$STATE_DIR" --out-dir "$MODELS_DIR" --require-all
python3 tools/fixtures/make_model_goldens.py "$MODELS_DIR/specserve-code" --out "$GOLDEN"
python3 tools/train/token_frequency.py --out "$MODELS_DIR/specserve-code/token_frequency.json"
