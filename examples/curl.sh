#!/usr/bin/env bash
# The curl equivalents of invoke_resnet.py against a local agent (npm run demo, docker compose, or the
# image on a GPU host). Writes the request bodies first (Pillow preprocessing, as the Python client does).
#
#   examples/curl.sh cat.jpg [http://localhost:8080]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${1:?usage: curl.sh IMAGE [AGENT_URL]}"
agent="${2:-http://localhost:8080}"
req="$(mktemp -d)"
trap 'rm -rf "$req"' EXIT
python3 "$here/invoke_resnet.py" --image "$image" --save-request "$req" >/dev/null

set -x
# Health: 200 with an empty body once the agent and Triton are up.
curl -s -o /dev/null -w '%{http_code}\n' "$agent/ping"

# PyTorch artifact, KServe v2 JSON sent as application/octet-stream (the launch post's way), on
# SageMaker's MME route. With MODEL_DATA_URL set, the first call downloads and loads the artifact.
# (--fail-with-body: an error answer is printed and ends the script with curl's status 22.)
curl -sS --fail-with-body -X POST "$agent/models/resnet_pt_v0.tar.gz/invoke" \
  -H 'Content-Type: application/octet-stream' --data-binary "@$req/resnet_pt_v0.json" -o "$req/pt-answer" ||
  { cat "$req/pt-answer"; echo; exit 22; }
head -c 300 "$req/pt-answer"
echo

# TensorRT artifact, binary+json (raw FP32 after a JSON header; the output comes back binary too), on
# SageMaker Runtime's InvokeEndpoint route with TargetModel as its header.
# Without a GPU no TensorRT plan is packed: the answer is then a 400 ValidationError naming the missing
# artifact, printed, and the script ends there.
curl -sS --fail-with-body -X POST "$agent/endpoints/local/invocations" \
  -H 'X-Amzn-SageMaker-Target-Model: resnet_trt_v0.tar.gz' \
  -H "Content-Type: $(cat "$req/resnet_trt_v0.content-type")" \
  --data-binary "@$req/resnet_trt_v0.bin" -D - -o "$req/trt-answer" ||
  { cat "$req/trt-answer"; echo; exit 22; }

# What is loaded, and one model's lifecycle state.
curl -s "$agent/models"
echo
curl -s "$agent/models/resnet_pt_v0.tar.gz/status"
echo
