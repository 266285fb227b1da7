#!/usr/bin/env bash
# The bench on the GPU machine: install the carried wheels once, then run the named steps; logs
# and JSON land in $OUT.
#   bash benchmarks/device.sh smoke models bf16          # one call (10 minutes at most each)
#   bash benchmarks/device.sh nf4                         # a later call, machine still warm
#   bash benchmarks/device.sh nf4-bf16 appcheck
# Run through the `run` tool with carry [".whl"]: the prepared wheels (bitsandbytes, duckdb,
# transformers 5.24, peft 0.21.2, tokenizers, safetensors, accelerate, huggingface_hub).
# Steps: smoke (GPU, versions, the demo bench in bf16: every CUDA path in a minute), models
# (build the random 8B-shape base and 4 rank-16 adapters into $M), bf16 | nf4 | nf4-bf16 |
# none | auto (the bench of that quantization on $BENCH_MODEL), appcheck (one reply through
# get_host().stream_reply as the Inference page calls it, to cross-check the bench's batch 1),
# explain (the token view of a 256-token reply), scorecard (200 rows x 4 models vs one by one),
# profile (benchmarks/step_profile.py: a decode step's kernels and graph times, a diagnostic),
# prefillprof (benchmarks/prefill_profile.py: a joint prefill's passes, kernels, cuBLAS floor),
# attnsweep (benchmarks/attention_sweep.py: decode attention per split length, 1-16 rows),
# trace (benchmarks/first_reply_trace.py: the first reply after a load, method by method),
# timeline (benchmarks/batch_timeline.py: rows together request by request; first tokens),
# gemvsweep (benchmarks/gemv_sweep.py: the GEMVs' tiles against cuBLAS; SWEEP_ROWS=1 by
# default, 16,8,4,2 for the kernel of 2-16 rows).
# A dry run on a CPU: WHEELS=none PYTHON=.venv/bin/python BENCH_MODEL=demo \
#   BENCH_ARGS="--switches 50" bash benchmarks/device.sh models none appcheck
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
M=${MODELS_DIR:-/tmp/ff-models}
MODEL=${BENCH_MODEL:-llama-8b-shape}
RANK=16; [ "$MODEL" = demo ] && RANK=8
APPCHECK_Q=${APPCHECK_QUANTIZATION:-auto}  # auto: exactly as the page asks (bf16 for 8B on an H200)
if [ "${WHEELS:-.whl}" != none ]; then
  if [ ! -f /tmp/site/.ff-installed ]; then  # once per machine: later calls reuse /tmp/site
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site ${WHEELS:-.whl}/*.whl || exit 1
    touch /tmp/site/.ff-installed
  fi
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# The tokenizer keeps its threads, as in the app (a batch of prompts is encoded on all of them).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
quiet() { grep -v -e Warning -e "warnings.warn" -e "Loading weights" -e "Writing model" -e kernels ; }
build_models() {
  $PY -c "from pathlib import Path; from ff_lib.inference import benchmodels as b; \
b.build_models('$MODEL', Path('$M') / '$MODEL', $RANK)" 2>&1 | quiet
}
status=0
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case $step in
    smoke)
      nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
      $PY -c "import torch,transformers,peft,bitsandbytes as b,duckdb as d; print(torch.__version__, \
transformers.__version__, peft.__version__, b.__version__, d.__version__)"
      timeout 240 $PY -m ff_lib bench --model demo --quantization bf16 --sample-rows 1000 \
        --page-messages 0 --json "$OUT/smoke.json" 2>&1 | quiet | tee "$OUT/smoke.log" | tail -45
      status=$((status | PIPESTATUS[0])) ;;
    models)
      time build_models; ls -la "$M/$MODEL" ;;
    bf16|nf4|nf4-bf16|none|auto)
      timeout 570 $PY -m ff_lib bench --model "$MODEL" --quantization "$step" --models-dir "$M" \
        --sample-rows 1000 --page-messages 0 ${BENCH_ARGS:-} --json "$OUT/$step.json" 2>&1 \
        | quiet | tee "$OUT/$step.log" | tail -45
      status=$((status | PIPESTATUS[0])) ;;
    appcheck)
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      sizes="--prompt-tokens 512 --new-tokens 256"  # the bench's batch-1 sizes
      [ "$MODEL" = demo ] && sizes="--prompt-tokens 64 --new-tokens 64"
      timeout 300 $PY benchmarks/app_path_check.py --base "$M/$MODEL/base" \
        --adapter "$M/$MODEL/a0" $sizes --quantization "$APPCHECK_Q" \
        ${APPCHECK_ARGS:-} --json "$OUT/appcheck.json" 2>&1 | quiet | tee "$OUT/appcheck.log"
      status=$((status | PIPESTATUS[0])) ;;
    explain)  # the token view of a 256-token reply, through explain_reply as the pages call it
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      timeout 300 $PY benchmarks/explain_probe.py --model "$MODEL" --models-dir "$M" \
        --quantization "${EXPLAIN_QUANTIZATION:-bf16}" --reply-tokens 256 \
        --json "$OUT/explain.json" 2>&1 | quiet | tee "$OUT/explain.log" | tail -20
      status=$((status | PIPESTATUS[0])) ;;
    scorecard)  # 200 rows x 4 models through score_run, batched vs one by one (20 rows)
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      timeout 400 $PY benchmarks/scorecard_speed.py --model "$MODEL" --models-dir "$M" -n 200 \
        --sequential-n 20 --max-new-tokens 64 --repeats 1 --json "$OUT/scorecard.json" 2>&1 \
        | quiet | tee "$OUT/scorecard.log" | tail -12
      status=$((status | PIPESTATUS[0])) ;;
    profile)  # where a decode step's time goes (graph step times, kernels, GEMV bandwidth)
      timeout 400 $PY benchmarks/step_profile.py --json "$OUT/profile.json" 2>&1 \
        | tee "$OUT/profile.log"
      status=$((status | PIPESTATUS[0])) ;;
    prefillprof)  # where a joint prefill's time goes (pass times, kernels, cuBLAS's floor)
      timeout 300 $PY benchmarks/prefill_profile.py --json "$OUT/prefillprof.json" \
        ${PREFILL_TRACE:+--trace "$OUT/prefill-trace.json"} 2>&1 \
        | tee "$OUT/prefillprof.log"
      status=$((status | PIPESTATUS[0])) ;;
    attnsweep)  # the decode attention kernel's time per split length (a diagnostic)
      timeout 300 $PY benchmarks/attention_sweep.py --json "$OUT/attn-sweep.json" 2>&1 \
        | tee "$OUT/attn-sweep.log"
      status=$((status | PIPESTATUS[0])) ;;
    sweep)  # the lora_expand kernel's time per launch shape (a diagnostic)
      timeout 200 $PY benchmarks/expand_sweep.py --json "$OUT/sweep.json" 2>&1 | tee "$OUT/sweep.log"
      status=$((status | PIPESTATUS[0])) ;;
    trace)  # where the first reply after a load goes; prefill by SDPA backend (a diagnostic)
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      timeout 300 $PY benchmarks/first_reply_trace.py --model "$MODEL" --models-dir "$M" \
        ${TRACE_ARGS:-} --json "$OUT/trace.json" 2>&1 | quiet | tee "$OUT/trace.log" | tail -150
      status=$((status | PIPESTATUS[0])) ;;
    gemv)  # the step's base GEMMs at padded shapes (a diagnostic)
      timeout 200 $PY benchmarks/gemv_shapes.py --json "$OUT/gemv.json" > "$OUT/gemv.log" 2>&1
      status=$((status | $?)) ;;
    gemvsweep)  # the Triton GEMVs' tiles against cuBLAS at the step's shapes
      timeout 420 $PY benchmarks/gemv_sweep.py --rows ${SWEEP_ROWS:-1} --budget-s ${SWEEP_BUDGET:-300} \
        --json "$OUT/gemv-sweep.json" > "$OUT/gemv-sweep.log" 2>&1
      status=$((status | $?)); tail -8 "$OUT/gemv-sweep.log" ;;
    timeline)  # rows together step by step, and a first token after long and short replies
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      timeout 300 $PY benchmarks/batch_timeline.py --model "$MODEL" --models-dir "$M" \
        ${TIMELINE_ARGS:-} --json "$OUT/timeline.json" 2>&1 | quiet | tee "$OUT/timeline.log" | tail -60
      status=$((status | PIPESTATUS[0])) ;;
    firsttext)  # first text after a fresh load, twice: cold, then warm compile cache
      [ -f "$M/$MODEL/base/ff_bench.json" ] || build_models
      for run in cold warm; do
        timeout 240 $PY benchmarks/first_text_probe.py --model "$MODEL" --models-dir "$M" \
          --quantization "${FIRSTTEXT_QUANTIZATION:-bf16}" --json "$OUT/firsttext-$run.json" \
          2>&1 | quiet | tee "$OUT/firsttext-$run.log" | tail -12
        status=$((status | PIPESTATUS[0]))
      done ;;
    *)
      echo "unknown step: $step"; status=2 ;;
  esac
done
echo "=== done $(date +%T), status $status"
exit $status
