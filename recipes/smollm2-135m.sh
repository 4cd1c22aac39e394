#!/usr/bin/env bash
# How the shipped smollm2-135m checkpoint was made (CPU, 2 cores). Run from the repository root;
# RUN (default runs/smollm2-135m) receives the responses, the run and the quality report.
set -euo pipefail
RUN=${RUN:-runs/smollm2-135m}
DATA=${WORKBENCH_DATA:-../shared/data}
R="workbench respond --model smollm2-135m --data-dir $DATA --max-new-tokens 64 --batch-size 32 --quiet"

# 1. The frozen LLM answers the training prompts (greedy, 64 new tokens); resumable.
$R --prompts nq-open --shuffle-seed 0 --limit 2000 --out "$RUN/responses.jsonl"
$R --prompts self-instruct --out "$RUN/responses.jsonl"
$R --prompts gsm8k --shuffle-seed 0 --limit 800 --out "$RUN/responses.jsonl"
# Held-out prompts for the quality report: NQ-open's EfficientQA test questions (never trained on).
$R --prompts "$DATA/nq-open/NQ-open.efficientqa.test.1.1.jsonl" --field question --limit 200 \
   --heldout --out "$RUN/heldout.jsonl"

# 2. Train in three stages; add --resume to any of them to continue an interrupted run.
#    Stage 1 (recipes/smollm2-135m.yaml): 400 steps on all pairs from the untrained start.
workbench train --config recipes/smollm2-135m.yaml --responses "$RUN/responses.jsonl" --out "$RUN/train" "$@"
#    Stage 2 (recipes/smollm2-135m-continue.yaml): 400 more steps from stage 1's weights on the first
#    600 pairs (NQ-open), with the alignment term scaled up and a higher learning rate.
workbench train --config recipes/smollm2-135m-continue.yaml --init-from "$RUN/train" \
   --responses "$RUN/responses.jsonl" --out "$RUN/train2" "$@"

#    Stage 3 (recipes/smollm2-135m-stage3.yaml): 1,500 more steps from stage 2's weights that
#    reconstruct only each answer's first 16 tokens, on 3,610 NQ-open questions answered with a
#    20-token cap (cheap to generate; a cut answer gets no EOS in training).
workbench respond --model smollm2-135m --data-dir "$DATA" --prompts nq-open --shuffle-seed 0 --limit 4000 \
   --max-new-tokens 20 --batch-size 32 --quiet --out "$RUN/responses-short.jsonl"
workbench train --config recipes/smollm2-135m-stage3.yaml --init-from "$RUN/train2" \
   --responses "$RUN/responses-short.jsonl" --out "$RUN/train3" "$@"

# 3. Held-out quality for the card. The generic-answer baseline is the best constant answer among
#    the full (64-token) training answers, like the held-out answers it is scored against.
workbench quality "$RUN/train3" --heldout "$RUN/heldout.jsonl" --train-responses "$RUN/responses.jsonl" \
   --out "$RUN/quality.json" | tee "$RUN/quality.md"
