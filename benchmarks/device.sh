#!/usr/bin/env bash
# One device call: install the carried wheels, then run the named steps, logs and JSON under $OUT.
#   bash benchmarks/device.sh smoke bf16 nf4 compile engine
# (run through the `run` tool with carry [".whl"]; each step has its own time limit)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site ${WHEELS:-.whl}/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
M=/tmp/ff-models
quiet() { grep -v -e Warning -e "warnings.warn" -e "Loading weights" -e "Writing model" ; }
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case $step in
    smoke)
      nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
      python3 -c "import torch,transformers,peft,bitsandbytes as b; print(torch.__version__, transformers.__version__, peft.__version__, b.__version__)"
      timeout 180 python3 -m pytest -x -q -p no:cacheprovider tests/test_fastpath.py 2>&1 | tail -4 ;;
    bf16|nf4|compile)
      q=none; extra=""
      [ "$step" = nf4 ] && q=nf4
      [ "$step" = compile ] && extra="--compile"
      timeout 330 python3 -m ff_lib bench --model llama-8b-shape --quantization $q $extra \
        --models-dir $M --sample-rows 1000 --page-messages 0 --json "$OUT/$step.json" 2>&1 \
        | quiet | tee "$OUT/$step.log" | tail -40 ;;
    enginetests)
      timeout 200 python3 -m pytest -x -q -p no:cacheprovider tests/test_loading.py \
        tests/test_generation.py 2>&1 | tail -6 ;;
    engine)
      timeout 300 python3 benchmarks/engine_nf4.py --models-dir $M --json "$OUT/engine.json" 2>&1 \
        | quiet | tee "$OUT/engine.log" | tail -30 ;;
  esac
done
echo "=== done $(date +%T)"
