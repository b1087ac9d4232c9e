# The SageMaker bring-your-own-container image: NVIDIA Triton Inference Server with the agent in front.
# SageMaker runs `docker run <image> serve`; `serve` sets SageMaker's paths and ports and starts the agent,
# which starts and supervises tritonserver in this container (TRITON_MANAGED=true).
#
#   docker build -t triton-sagemaker-mme-agent .
#   docker run --gpus=all -p 8080:8080 triton-sagemaker-mme-agent serve
#
# Every base image is pinned by tag. The Triton release is deploy/triton-release.json's: the export script's
# torch, the plan script's TensorRT and the deploy script's SageMaker AMI agree with it (tests check).
#
# TRITON_BASE picks the Triton image underneath the agent:
#   nvidia     NVIDIA's image from NGC (default; any machine with an NVIDIA driver)
#   sagemaker  AWS's SageMaker Triton image (the one SageMaker documents for GPU multi-model endpoints),
#              the same Triton release built by AWS; its URI is per region (SAGEMAKER_TRITON_IMAGE):
#   docker build --build-arg TRITON_BASE=sagemaker \
#     --build-arg SAGEMAKER_TRITON_IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-tritonserver:24.12-py3 .
ARG TRITON_BASE=nvidia
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.12-py3
ARG SAGEMAKER_TRITON_IMAGE=785573368785.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.12-py3
# Node.js 22 LTS from the official Node.js image: the release tarball that image installs is verified
# against the release's signed SHASUMS, and the build stage runs the very same binary the final image gets.
ARG NODE_IMAGE=node:22.23.3-bookworm-slim

# --- build: compile the TypeScript sources (dev dependencies live only in this stage) ---
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY protos ./protos
COPY src ./src
RUN npm run build

# --- deps: production dependencies only (all pure JavaScript, so they run on the Triton image as built) ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- the Triton underneath: NVIDIA's or AWS's SageMaker build of the same release ---
FROM ${TRITON_IMAGE} AS triton-nvidia
FROM ${SAGEMAKER_TRITON_IMAGE} AS triton-sagemaker

# --- runtime: Triton, Node.js, the built agent ---
FROM triton-${TRITON_BASE} AS runtime
ARG RUN_AS=triton-server
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="triton-sagemaker-mme-agent" \
      org.opencontainers.image.description="SageMaker multi-model endpoint contract on NVIDIA Triton Inference Server"
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/agent
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY protos ./protos
COPY scripts/serve ./scripts/serve
# Non-root by default: Triton's image has the triton-server user (uid 1000); it is created if missing.
# The repository and cache live under /tmp, writable by that user.
RUN ln -s /opt/agent/scripts/serve /usr/local/bin/serve \
    && if ! id -u triton-server >/dev/null 2>&1; then useradd --create-home --uid 1000 triton-server; fi \
    && node --version
ENV NODE_ENV=production \
    TRITON_MANAGED=true \
    TRITON_MODEL_REPOSITORY=/tmp/triton-repository \
    MODEL_CACHE_DIR=/tmp/model-cache
USER ${RUN_AS}
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SAGEMAKER_BIND_TO_PORT||8080)+'/ping').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# NVIDIA's entry point prints the image's banner and runs its arguments: `serve` by default.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]
CMD ["serve"]
