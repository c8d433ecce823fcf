#!/usr/bin/env bash
# The project's one device script: every check that needs an NVIDIA GPU, run as one command in
# the fixed time slot a lent GPU gives (docs/TRAINING.md, "GPU burst").
#   1. GPU-path checks (at most 4 minutes): the `gpu`- and `tensorrt`-marked tests, then
#      runtime/doctor.py on the shipped model exported there (FP32 graphs only, for time), and
#      the torch-CUDA pipeline at 1280x720 with and without CUDA graphs (runtime/bench/graph_speedup.py).
#   2. Training burst (at most 5 minutes): continue training the shipped weights on the GPU with
#      mixed precision and large batches; checkpoints and history land under $OUT/burst.
#
# On the development machine, once (copies the training photos into .gpu_data/, git-ignored,
# about 33 MB, because ../shared does not travel to the device):
#   bash tools/on_gpu.sh --prepare
# On the device (repository root, .gpu_data carried, $OUT set by the device tool):
#   bash tools/on_gpu.sh
# On any machine without a GPU, a few steps of everything on the CPU, to test the script:
#   bash tools/on_gpu.sh --dry-run
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DATA="${GPU_DATA:-.gpu_data}"  # GPU_DATA: another folder, for the tests
SHARED=../shared/data

case "${1:-}" in
  --prepare)
    set -e
    rm -rf "$DATA.tmp" && mkdir -p "$DATA.tmp/val"
    cp -r "$SHARED/train" "$DATA.tmp/train"
    cp -r "$SHARED/kernels/npy" "$DATA.tmp/kernels"
    # The 8 validation photos train.py scores (it takes the first 8 in name order).
    find "$SHARED/val/CBSD68" -maxdepth 1 -type f | sort | head -n 8 | xargs -I{} cp {} "$DATA.tmp/val/"
    rm -rf "$DATA" && mv "$DATA.tmp" "$DATA"
    echo "on_gpu: $DATA ready ($(du -sh "$DATA" | cut -f1)); carry it: carry [\"$DATA\"]"
    exit 0
    ;;
  --dry-run) DRY=1 ;;
  "") DRY=0 ;;
  *) echo "usage: bash tools/on_gpu.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

if [ ! -d "$DATA/train" ]; then
  echo "on_gpu: $DATA/train is missing: run 'bash tools/on_gpu.sh --prepare' first and carry $DATA" >&2
  exit 2
fi
OUT="${OUT:-$PWD/out/on_gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

echo "== 1. GPU-path checks (at most 4 minutes)"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$OUT/environment.txt"
if [ "$DRY" = 1 ]; then
  # On a CPU the marked tests skip; collecting them proves the selection and the imports work.
  timeout 240 "$PY" -m pytest -m "gpu or tensorrt" -q -p no:cacheprovider --collect-only 2>&1 | tail -n 3
else
  # The doctor needs artifacts with their reference frame, and the torch programs must come from
  # the device's own PyTorch: export the shipped model there (FP32 only), in the background on
  # the spare cores while the GPU tests run (the export took 8.7 minutes on 2 loaded CPU cores).
  timeout 170 "$PY" export/build_engines.py --out "$OUT/artifacts" --no-fp16 --no-int8 -q >"$OUT/export.log" 2>&1 &
  exporter=$!
  # The native frame kernels' gpu tests (and the torch-CUDA device path's) skip without the
  # library: build it for this GPU alone unless a build/ was carried.
  if [ ! -e build/libunfoldldm_frame_kernels.so ] && command -v cmake >/dev/null && command -v nvcc >/dev/null; then
    timeout 90 bash -c 'cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=native && cmake --build build -j' \
      >"$OUT/native_build.log" 2>&1 || echo "on_gpu: native kernels not built, their tests skip: $OUT/native_build.log"
  fi
  timeout 120 "$PY" -m pytest -m "gpu or tensorrt" -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/gpu_checks.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  if wait "$exporter"; then
    timeout 30 "$PY" runtime/doctor.py --artifacts "$OUT/artifacts" --out "$OUT/doctor_report.json" 2>&1 \
      | tee "$OUT/doctor.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    # The torch-CUDA pipeline at 1280x720 with and without whole-frame CUDA graphs, one run.
    timeout 30 "$PY" -m runtime.bench.graph_speedup --artifacts "$OUT/artifacts" --size 1280x720 --iters 10 \
      --json "$OUT/graph_speedup.json" 2>&1 | tee "$OUT/graph_speedup.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  else
    echo "on_gpu: export for the doctor failed or ran out of time: $OUT/export.log"; tail -n 5 "$OUT/export.log"; status=1
  fi
fi

echo "== 2. Training burst (at most 5 minutes)"
if [ "$DRY" = 1 ]; then
  burst=(--device cpu --joint-iters 3 --batch-size 2 --crop 64 --val-every 2 --save-every 2 --max-minutes 2 --threads 2)
else
  # Joint phase only, from the shipped weights; 12 loader workers keep the degradation synthesis
  # of large batches off the GPU's critical path. --max-minutes stops it inside the slot.
  burst=(--device cuda --joint-iters 3000 --batch-size 48 --crop 128 --workers 12 --val-every 250
         --save-every 250 --max-minutes 4.3)
fi
timeout 300 "$PY" model/train.py --size edge --init-from model/weights/edge.pt \
  --data "$DATA/train" --kernels "$DATA/kernels" --val "$DATA/val" \
  --phase1-iters 0 --warmup-iters 0 --lr 2e-4 --seed 11 --out "$OUT/burst" "${burst[@]}" 2>&1 \
  | tr '\r' '\n' | grep -v '^train: ' | tee "$OUT/burst.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
ls -la "$OUT/burst" 2>/dev/null
echo "on_gpu: done (status $status); the burst's weights are $OUT/burst/model.pt"
exit "$status"
