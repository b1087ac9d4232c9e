#!/usr/bin/env bash
# Packs the launch post's two artifacts exactly as it does:
#   mkdir -p triton-serve-pt/resnet/1/ && mv -f workspace/model.pt triton-serve-pt/resnet/1/
#   tar -C triton-serve-pt/ -czf resnet_pt_v0.tar.gz resnet
# (and the same for TensorRT's model.plan), with the configs in resnet_pt/ and resnet_trt/.
#
#   WORKSPACE  where export_resnet50.py / build_trt_plan.sh wrote model.pt and model.plan (default ./workspace)
#   OUT        where the .tar.gz files go (default ./dist)
# An artifact whose model file is missing is skipped with a note (model.plan needs a GPU to build).
# Each artifact is then checked with the agent's validator when the agent's sources are at hand.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workspace="${WORKSPACE:-$here/workspace}"
out="${OUT:-$here/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

packed=()
pack() {
  local artifact=$1 configs=$2 serve_dir=$3 file=$4
  if [[ ! -f "$workspace/$file" ]]; then
    echo "skipped $artifact: $workspace/$file not found"
    return
  fi
  mkdir -p "$stage/$serve_dir/resnet/1/"
  cp -f "$workspace/$file" "$stage/$serve_dir/resnet/1/"
  cp -f "$here/$configs/resnet/config.pbtxt" "$stage/$serve_dir/resnet/"
  tar -C "$stage/$serve_dir/" -czf "$out/$artifact" resnet
  echo "packed $out/$artifact ($(du -h "$out/$artifact" | cut -f1))"
  packed+=("$out/$artifact")
}

pack resnet_pt_v0.tar.gz resnet_pt triton-serve-pt model.pt
pack resnet_trt_v0.tar.gz resnet_trt triton-serve-trt model.plan

if ((${#packed[@]} == 0)); then
  echo "nothing packed: run python3 triton-models/export_resnet50.py first" >&2
  exit 1
fi
root="$(dirname "$here")"
if [[ "${VALIDATE:-1}" != 0 && -f "$root/dist/src/cli.js" ]]; then
  node "$root/dist/src/cli.js" validate "${packed[@]}"
elif [[ "${VALIDATE:-1}" != 0 && -x "$root/node_modules/.bin/tsx" ]]; then
  "$root/node_modules/.bin/tsx" "$root/src/cli.ts" validate "${packed[@]}"
fi
