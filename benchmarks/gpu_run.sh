#!/usr/bin/env bash
# The GPU machine's command for benchmarks/gpu.py (issue 18): `bash benchmarks/gpu_run.sh [gpu.py options]`.
# Needs the ignored folders .whl/ (wheels: wb/ for the workbench side, official/ for llm2vec-gen 0.1.3)
# and .gpu/ (configs, tokenizers, texts: `python benchmarks/gpu.py --prepare`) carried with the tree.
# Writes $OUT/gpu.json (rewritten after every section), $OUT/gpu.log and $OUT/setup.log.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 2
{
  date -u
  nvidia-smi || true
  python3 --version
  python3 -c "import torch, transformers as t; print(torch.__version__, torch.version.cuda, t.__version__)"
  for pair in wb:/tmp/site official:/tmp/offsite; do
    src=.whl/${pair%%:*} dst=${pair#*:}
    rm -rf "$dst" && mkdir -p "$dst"
    timeout 120 python3 -m pip install -q --no-index --no-deps --disable-pip-version-check \
      --target "$dst" "$src"/*.whl || for w in "$src"/*.whl; do python3 -m zipfile -e "$w" "$dst"; done
  done
  PYTHONPATH=/tmp/site:$PWD python3 -c "import workbench.store.loading, workbench.train.trainer; print('wb ok')"
  PYTHONPATH=/tmp/offsite python3 -c "import llm2vec_gen, transformers as t; print('official ok', t.__version__)"
} >"$OUT/setup.log" 2>&1
tail -n 3 "$OUT/setup.log"
PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 timeout -k 15 380 python3 benchmarks/gpu.py --device cuda \
  --out "$OUT/gpu.json" --official-site /tmp/offsite --budget-s 340 "$@" 2>&1 | tee "$OUT/gpu.log"
exit "${PIPESTATUS[0]}"
