# One image for every Python service (encoder, api, feeder, the one-shot Vespa deploy and model
# download), built once by the compose service "python-image" and reused by the others: the
# command picks the role, e.g. `clipsearch serve`, `clipsearch encoder`.
#
# CPU torch by default (from the PyTorch CPU wheel index: no CUDA libraries, ~1 GB smaller).
# For NVIDIA GPUs build with e.g.
#   docker build -f docker/python.Dockerfile --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim AS base

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    CLIPSEARCH_DATA_DIR=/data \
    CLIPSEARCH_HOST=0.0.0.0

RUN useradd --create-home --uid 10001 clipsearch \
    && mkdir -p /data && chown clipsearch /data

WORKDIR /app
# torch first, from the chosen index, so that the project install does not pull another build
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY clipsearch ./clipsearch
COPY services ./services
COPY feeder ./feeder
COPY vespa-app ./vespa-app
COPY vespa-app-cluster ./vespa-app-cluster
RUN pip install . && python -c "import clipsearch, services, feeder"

USER clipsearch
VOLUME ["/data"]
ENTRYPOINT ["clipsearch"]
CMD ["--help"]
