#!/usr/bin/env bash
# One GPU session's checks and measurements, for the device host (no Node there: pack.sh's
# bundle provides it). From the project root, after `npm install && ../shared/gpu/pack.sh`:
#     run: source .gpu/setup.sh && bash bench/gpu_run.sh   (carry .gpu)
# Writes one log per stage into $OUT/logs (or ./gpu-out/logs), packed at the end into
# $OUT/logs.tgz (the device tool returns at most 8 files), and a summary line per stage (exit
# status, seconds) on stdout. STAGES picks stages (default: all, in this order):
#   tests     CUDA and NCCL test files (CUDA_TESTS overrides the list)
#   hf        our to-hf output of the fixtures loads in transformers with the fixture's logits
#   parquet   pyarrow-written parquet fixtures (to $OUT/parquet.tgz)
#   preprocess  preprocessing throughput vs Python `tokenizers` (rewrites docs/benchmarks.md there)
#   bench     NeoX.ts (BENCH_MODELS, also with --loss-chunk for CHUNK_MODELS and --bias-gelu-fusion
#             for GELU_MODELS) and PyTorch eager
#   npmtest   the whole `npm test` with a GPU present
#   multi     (2+ GPUs) NCCL across processes, the trainer on 2 GPUs vs 1, and data-parallel
#             throughput of NeoX.ts (ZeRO 0; with ZERO_STAGES="1 2 3" also those, for memory per GPU) vs torch_ddp.py on GPUS;
#             MULTI_PARTS="tests" or "bench" runs one half (the tests alone take several minutes: one call each)
set -uo pipefail
root=${OUT:-gpu-out}
out=$root/logs
mkdir -p "$out"
trap 'tar czf "$root/logs.tgz" -C "$root" logs && rm -rf "$out"' EXIT
stages=" ${STAGES:-tests hf parquet preprocess bench npmtest} "
want() { [[ "$stages" == *" $1 "* ]]; }
stage() { # stage NAME SECONDS CMD...: runs CMD with a time limit, log in $out/NAME.txt
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "stage $name: rc=$? $((SECONDS - t0))s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
stage tsc 120 npx tsc -p .
stage doctor 60 node bin/neox.js doctor

if want tests; then
  stage cuda_tests 300 node --test ${CUDA_TESTS:-dist/tests/cuda.test.js dist/tests/cuda_attention.test.js dist/tests/cuda_train.test.js dist/tests/cuda_infer.test.js dist/tests/cuda_zero.test.js dist/tests/nccl.test.js}
  grep -E '^# (pass|fail|skipped)|^not ok' "$out/cuda_tests.txt"
fi

if want hf; then
  rt=$(mktemp -d)
  for m in gpt_neox llama mistral; do
    node bin/neox.js convert from-hf "tests/fixtures/hf/$m" "$rt/$m-neox" > /dev/null &&
      node bin/neox.js convert to-hf "$rt/$m-neox" "$rt/$m-hf" > /dev/null
  done
  stage hf_export 180 python3 tools/check_hf_export.py "$rt/gpt_neox-hf:tests/fixtures/hf/gpt_neox" "$rt/llama-hf:tests/fixtures/hf/llama" \
    "$rt/mistral-hf:tests/fixtures/hf/mistral"
fi

if want parquet; then
  mkdir -p "$out/parquet"
  stage parquet 60 python3 tests/fixtures/data/make_parquet_fixtures.py "$out/parquet"
  tar czf "$root/parquet.tgz" -C "$out" parquet
fi

if want preprocess; then
  stage preprocess_bench 240 node dist/bench/preprocess.js --mb 16 --pin --python --tokenizers gpt2bpe,hf-bytelevel --write-docs
  cp docs/benchmarks.md "$out/benchmarks_after_preprocess.md"
fi

if want bench; then
  for m in ${BENCH_MODELS:-pythia-160m pythia-410m pythia-1.4b}; do
    stage "bench_neox_$m" 150 node dist/bench/train_bench.js "$m" --device cuda
    grep '^{' "$out/bench_neox_$m.txt" >> "$out/bench_neox.jsonl"
  done
  for m in ${CHUNK_MODELS-pythia-410m pythia-1.4b}; do
    stage "bench_neox_${m}_chunk" 150 node dist/bench/train_bench.js "$m" --device cuda --loss-chunk 8192
    grep '^{' "$out/bench_neox_${m}_chunk.txt" | sed 's/^{/{"loss_chunk":8192,/' >> "$out/bench_neox.jsonl"
  done
  for m in ${GELU_MODELS-}; do # bias_gelu_fusion: the tanh GELU in cuBLASLt's epilogue
    stage "bench_neox_${m}_gelu_fusion" 150 node dist/bench/train_bench.js "$m" --device cuda --bias-gelu-fusion
    grep '^{' "$out/bench_neox_${m}_gelu_fusion.txt" >> "$out/bench_neox.jsonl"
  done
  stage bench_torch 300 python3 .gpu/bench/torch_reference.py ${BENCH_MODELS:-pythia-160m pythia-410m pythia-1.4b}
  grep '^{' "$out/bench_torch.txt" > "$out/bench_torch.jsonl"
  cat "$out/bench_neox.jsonl" "$out/bench_torch.jsonl"
fi

if want npmtest; then
  stage npm_test ${NPM_TEST_LIMIT:-400} npm test
  grep -E '^# (tests|pass|fail|skipped)|^not ok' "$out/npm_test.txt"
fi

if want multi; then
  ngpu=$(nvidia-smi -L | wc -l)
  parts=" ${MULTI_PARTS:-tests bench} "
  if [[ "$parts" == *" tests "* ]]; then
    stage multi_tests 540 node --test dist/tests/nccl_multi.test.js dist/tests/cuda_parallel_train.test.js
    grep -E '^# (pass|fail|skipped)|^not ok' "$out/multi_tests.txt"
  fi
  [[ "$parts" == *" bench "* ]] && for n in ${GPUS:-2 4}; do
    [ "$n" -le "$ngpu" ] || { echo "multi: $n GPUs asked, $ngpu present"; continue; }
    for m in ${MULTI_MODELS:-pythia-160m pythia-410m pythia-1.4b}; do
      stage "ddp_neox_${n}_$m" 300 node bin/neox.js launch --nproc-per-node "$n" --exec node dist/bench/train_bench.js "$m" --device cuda
      grep -h '^\[rank 0\] {' "$out/ddp_neox_${n}_$m.txt" | sed 's/^\[rank 0\] //' >> "$out/ddp_neox.jsonl"
      stage "ddp_torch_${n}_$m" 300 python3 -m torch.distributed.run --nproc_per_node "$n" .gpu/bench/torch_ddp.py "$m"
      grep -h '^{' "$out/ddp_torch_${n}_$m.txt" >> "$out/ddp_torch.jsonl"
      for z in ${ZERO_STAGES-}; do
        stage "ddp_neox_${n}_${m}_zero$z" 300 node bin/neox.js launch --nproc-per-node "$n" --exec node dist/bench/train_bench.js "$m" --device cuda --zero "$z"
        grep -h '^\[rank 0\] {' "$out/ddp_neox_${n}_${m}_zero$z.txt" | sed 's/^\[rank 0\] //' >> "$out/ddp_neox.jsonl"
      done
    done
  done
  cat "$out/ddp_neox.jsonl" "$out/ddp_torch.jsonl" 2>/dev/null
fi
