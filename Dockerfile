# syntax=docker/dockerfile:1.7
#
# One image for the Garfield operator (garfield-operator) and the training runtime
# (python -m garfield node). The operator's job pods default to it; a job may name an image built
# FROM it that adds the user's task code (docs/user-guide.md).
#
#   docker build -t garfield:0.1.0 .                                   # CPU: torch CPU, tensorflow-cpu
#   docker build -t garfield:0.1.0-cuda --build-arg VARIANT=cuda .      # NVIDIA GPUs: torch CUDA, tensorflow[and-cuda]
#
# Without a registry or GitHub (the project's sandbox machines: PyPI and Debian's mirror only),
# scripts/build-image.sh puts local stand-ins for the two base images into podman's storage under
# the very names below and sets the local-equivalent build arguments (PYTHON_FROM, TORCH_FIND_LINKS,
# SSL_CERT_FILE; FRAMEWORKS for a smaller image); docs/image.md. Their defaults are the real sources: a plain
# `docker build` is the one described here.
#
# Why this shape:
# - Python comes from uv's relocatable CPython builds, so the CPU (Debian) and CUDA (Ubuntu) images run
#   the very same interpreter; the dependency pins below equal pyproject.toml's (tests/docker checks).
# - The CUDA variant starts from NVIDIA's small `base` image (driver hooks, NVIDIA_* variables): the
#   CUDA, cuDNN and NCCL libraries come with the torch and tensorflow[and-cuda] wheels, not twice.
# - Multi-stage: compilers, uv and pip caches stay in the builder; the final stage holds the
#   interpreter, one virtualenv and a non-root user (UID 10001, as the Helm chart expects).
# - No ENTRYPOINT: Kubernetes `command` replaces it anyway, and the same image runs as the operator
#   (`garfield-operator`) and as a replica (`python -m garfield node`).

# cpu or cuda. The base images are pinned here by tag (edit them, not build arguments, so that
# scanners and reviewers see exactly what is pulled).
ARG VARIANT=cpu
# Where the interpreter comes from. uv (the real build): uv's python-build-standalone CPython,
# downloaded from GitHub into /opt/python. debian: bookworm's own python3 (3.11, from apt in the base
# stage, so the final stage has it too) with /opt/python left empty: a local equivalent for machines
# that reach Debian's mirror but not GitHub (CPU variant; the CUDA base is Ubuntu's, not Debian's).
ARG PYTHON_FROM=uv

# ---------------------------------------------------------------- bases, one per variant
FROM debian:12.12-slim AS base-cpu

# CUDA 12.8 user-space libraries (from the wheels) need an NVIDIA driver >= 570 on the node.
FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS base-cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# hadolint ignore=DL3006
FROM base-${VARIANT} AS base
ARG VARIANT
ARG PYTHON_FROM
# ca-certificates: TLS to the API server and object stores. Nothing else: no shell tools needed.
# (python3 only with PYTHON_FROM=debian, see above.)
RUN case "${VARIANT}/${PYTHON_FROM}" in */uv) python="" ;; cpu/debian) python="python3" ;; \
      *) echo "PYTHON_FROM=${PYTHON_FROM} with VARIANT=${VARIANT}: use uv (or debian with cpu)" >&2; exit 1 ;; esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ${python} \
 && rm -rf /var/lib/apt/lists/*

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---------------------------------------------------------------- builder
FROM base AS builder
ARG VARIANT
# The uv release pinned above fixes which 3.11 patch release this resolves to.
ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
# PyTorch wheel index of the CUDA variant (download.pytorch.org/whl/<TORCH_CUDA>); match base-cuda.
# A CUDA 12 build on purpose: its nvidia-*-cu12 libraries fall inside tensorflow[and-cuda] 2.21's
# ranges (CUDA 12.x, cuDNN 9, NCCL >= 2.27), so both frameworks share one copy of them.
ARG TORCH_CUDA=cu128
ARG TENSORFLOW_VERSION=2.21.0
ARG GRPCIO_VERSION=1.85.1
ARG KOPF_VERSION=1.45.2
ARG KUBERNETES_VERSION=37.0.2
ARG PYTHON_FROM
# Local equivalents (empty = the real sources). TORCH_FIND_LINKS: a folder mounted into the build
# (build-image.sh mounts one on /mnt: /mnt/wheels) holding the torch ${TORCH_VERSION}+cpu wheel, for
# machines that cannot reach download.pytorch.org; torch's own dependencies still come from the index.
ARG TORCH_FIND_LINKS=""
# SSL_CERT_FILE (no default: unset): a CA bundle mounted into the build, for machines whose HTTPS to
# the package index passes a TLS-inspecting proxy (uv trusts only its built-in roots otherwise). An
# ARG, so it stays out of the image.
ARG SSL_CERT_FILE
# FRAMEWORKS: all (the real image: PyTorch and TensorFlow) or pytorch (no TensorFlow: a smaller
# image for machines short of disk; the runtime imports TensorFlow only for TensorFlow tasks).
ARG FRAMEWORKS=all

COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

RUN if [ "${PYTHON_FROM}" = "debian" ]; then mkdir -p /opt/python; export UV_PYTHON_PREFERENCE=only-system; \
    else uv python install "${PYTHON_VERSION}"; fi \
 && uv venv --seed --python "${PYTHON_VERSION}" /opt/venv

ENV VIRTUAL_ENV=/opt/venv
# torch first, from the index of the variant: the CPU wheels (no CUDA) or the CUDA ones.
# With TORCH_FIND_LINKS the pin carries the CPU build's local version (+cpu), which no index but the
# folder has: the CUDA build on PyPI can never be picked instead.
RUN if [ -n "${TORCH_FIND_LINKS}" ]; then \
      if [ "${VARIANT}" = "cuda" ]; then echo "TORCH_FIND_LINKS serves the CPU variant only" >&2; exit 1; fi; \
      uv pip install --find-links "${TORCH_FIND_LINKS}" "torch==${TORCH_VERSION}+cpu"; \
    else \
      if [ "${VARIANT}" = "cuda" ]; then index="https://download.pytorch.org/whl/${TORCH_CUDA}"; \
      else index="https://download.pytorch.org/whl/cpu"; fi; \
      uv pip install --index-url "${index}" "torch==${TORCH_VERSION}"; \
    fi

# Then every other direct dependency at the version pyproject.toml names (== pins) or the version
# tested with (ranges), TensorFlow as the variant needs it, and the operator's libraries.
RUN case "${FRAMEWORKS}" in all) ;; pytorch) ;; \
      *) echo "FRAMEWORKS must be all or pytorch, not ${FRAMEWORKS}" >&2; exit 1 ;; esac \
 && if [ "${VARIANT}" = "cuda" ]; then tf="tensorflow[and-cuda]==${TENSORFLOW_VERSION}"; \
    else tf="tensorflow-cpu==${TENSORFLOW_VERSION}"; fi \
 && if [ "${FRAMEWORKS}" = "pytorch" ]; then tf=""; fi \
 && uv pip install \
      ${tf:+"${tf}"} \
      "grpcio==${GRPCIO_VERSION}" \
      "kopf==${KOPF_VERSION}" \
      "kubernetes==${KUBERNETES_VERSION}" \
      "numpy==2.4.6" \
      "protobuf==7.36.2" \
      "pyyaml==6.0.4" \
      "jsonschema==4.26.0" \
      "prometheus-client==0.26.0" \
      "psutil==7.2.2" \
      "numba==0.68.1" \
      "ml_dtypes==0.6.0" \
      "cryptography==51.0.1"

# The project itself (its build hook generates the gRPC modules from garfield.proto). Only the
# files the wheel needs are copied (see .dockerignore), so editing tests or docs reuses the layers above.
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY runtime/ runtime/
COPY operator/ operator/
RUN uv pip install --no-deps . \
 && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/venv/bin/garfield crd >/dev/null \
 && /opt/venv/bin/garfield-operator --help >/dev/null

# ---------------------------------------------------------------- final image
FROM base AS final
ARG VARIANT
LABEL org.opencontainers.image.title="garfield" \
      org.opencontainers.image.description="Byzantine-resilient distributed training: Kubernetes operator and runtime (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

RUN groupadd --system --gid 10001 garfield \
 && useradd --system --uid 10001 --gid 10001 --home-dir /workspace --create-home --shell /usr/sbin/nologin garfield

COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv

# /workspace is the user's code folder in images built FROM this one (on PYTHONPATH).
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/workspace \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GARFIELD_IMAGE_VARIANT=${VARIANT}

# The aggregation rules' compiled kernels, baked in: numba's on-disk cache (the kernels are
# cache=True) is filled once here, for float32 and float64, so no replica spends seconds compiling
# at start. It is filled in this stage, against the interpreter and files the replicas run, and owned
# by the runtime user: numba only uses a cache folder it can write to. A node whose CPU differs from
# the build machine's recompiles into it once; with a read-only filesystem the kernels compile in memory.
ENV NUMBA_CACHE_DIR=/opt/garfield/cache/numba
RUN python -m garfield.launcher.forkserver --warm-all \
 && chown -R 10001:10001 /opt/garfield

WORKDIR /workspace
USER 10001:10001

# gRPC (replicas), metrics/status (replicas), health and metrics (operator).
EXPOSE 50051 9090 8080 9100

# Kubernetes probes check health (the operator's /healthz, the replicas' /status); an image-level
# check would be wrong for one of the two roles this image plays.
HEALTHCHECK NONE

CMD ["garfield", "--help"]
