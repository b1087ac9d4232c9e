#!/usr/bin/env bash
# Builds the TensorRT engine model.plan from model.onnx with trtexec, as the launch post does.
# Needs an NVIDIA GPU: a plan is tied to the GPU architecture and the TensorRT version that built it, so
# build it on the GPU type you will serve on, with the TensorRT of the Triton image in the Dockerfile
# (NGC's tensorrt and tritonserver images of the same release carry the same TensorRT).
#
#   ./build_trt_plan.sh [--fp16] [--local]
#     --fp16   reduce precision to FP16 (faster, smaller; the post's option)
#     --local  run trtexec from PATH instead of NGC's TensorRT container
#   WORKSPACE (default ./workspace) holds model.onnx and receives model.plan.
#   TRITON_RELEASE (default: the release the image ships, deploy/triton-release.json) picks
#   nvcr.io/nvidia/tensorrt:<release>-py3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pinned="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tritonRelease"])' "$here/../deploy/triton-release.json")"
release="${TRITON_RELEASE:-$pinned}"
precision=()
local_run=false
for arg in "$@"; do
  case "$arg" in
    --fp16) precision=(--fp16) ;;
    --local) local_run=true ;;
    *) echo "unknown argument '$arg' (usage: build_trt_plan.sh [--fp16] [--local])" >&2; exit 2 ;;
  esac
done
workspace="${WORKSPACE:-$here/workspace}"
[[ -f "$workspace/model.onnx" ]] || { echo "no $workspace/model.onnx: run export_resnet50.py first" >&2; exit 1; }
workspace="$(cd "$workspace" && pwd)"

# Batch 1 to 128 (max_batch_size 128 in resnet_trt/resnet/config.pbtxt), tuned for the post's warmup batch.
args=(--onnx=/workspace/model.onnx --saveEngine=/workspace/model.plan
  --minShapes=input:1x3x224x224 --optShapes=input:128x3x224x224 --maxShapes=input:128x3x224x224
  "${precision[@]}")
if $local_run; then
  cd "$workspace"
  trtexec "${args[@]//\/workspace\//}"
else
  docker run --rm --gpus=all -v "$workspace:/workspace" "nvcr.io/nvidia/tensorrt:${release}-py3" trtexec "${args[@]}"
fi
echo "wrote $workspace/model.plan"
