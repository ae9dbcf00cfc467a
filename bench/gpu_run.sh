#!/usr/bin/env bash
# One GPU session's checks and measurements, for the device host (no Node there: pack.sh's
# bundle provides it). From the project root, after `npm install && ../shared/gpu/pack.sh`:
#     run: source .gpu/setup.sh && bash bench/gpu_run.sh   (carry .gpu)
# Writes everything under $OUT (or ./gpu-out): tests, NeoX.ts and PyTorch throughput in the same run.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
npx tsc -p . > "$out/tsc.txt" 2>&1
node bin/neox.js doctor > "$out/doctor.txt" 2>&1
node --test ${CUDA_TESTS:-dist/tests/cuda.test.js dist/tests/cuda_attention.test.js dist/tests/cuda_train.test.js} > "$out/cuda_tests.txt" 2>&1
grep -E '^# (pass|fail|skipped)|^not ok' "$out/cuda_tests.txt"
# Hugging Face export: our to-hf output loads in transformers and gives the fixture's logits.
rt=$(mktemp -d)
for m in gpt_neox llama mistral; do
  node bin/neox.js convert from-hf "tests/fixtures/hf/$m" "$rt/$m-neox" > /dev/null &&
  node bin/neox.js convert to-hf "$rt/$m-neox" "$rt/$m-hf" > /dev/null
done
python3 tools/check_hf_export.py "$rt/gpt_neox-hf:tests/fixtures/hf/gpt_neox" "$rt/llama-hf:tests/fixtures/hf/llama" \
  "$rt/mistral-hf:tests/fixtures/hf/mistral" > "$out/hf_export.jsonl" 2>&1
cat "$out/hf_export.jsonl"
for m in ${BENCH_MODELS:-pythia-160m pythia-410m pythia-1.4b}; do
  node dist/bench/train_bench.js "$m" --device cuda >> "$out/bench_neox.jsonl" 2>> "$out/bench_neox.err"
done
python3 .gpu/bench/torch_reference.py ${BENCH_MODELS:-pythia-160m pythia-410m pythia-1.4b} > "$out/bench_torch.jsonl" 2>&1
cat "$out/bench_neox.jsonl" "$out/bench_torch.jsonl"; tail -5 "$out/bench_neox.err" 2>/dev/null
