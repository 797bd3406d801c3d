# CPU image: the pipeline on ONNX Runtime, installed with the README's command, running its main job.
#   docker build -t pipeline .
#   docker run --rm -v "$PWD/runs:/app/runs" -v "$PWD/latency_tables:/app/latency_tables" pipeline
# The latency table is per machine: mount latency_tables/ so that the one `run` profiles on the
# first start is reused by the next (a container has the host's CPU, so its fingerprint is the host's).
# Not built in the project's sandbox (no Docker daemon there): written against python:3.11-slim.
FROM python:3.11-slim

# PyPI's Linux torch wheel is a CUDA build of several GB; the CPU build of the same release comes
# from PyTorch's own index (2.13.0+cpu), which pip prefers for `torch==2.13.0` when it sees both.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_NO_CACHE_DIR=1 \
    PIPELINE_CACHE=/cache \
    HF_HUB_OFFLINE=1

WORKDIR /app
COPY . .
# The README's install command, with the lock file (the test tools too: `docker run pipeline python -m pytest`).
RUN pip install torch==2.13.0 -e ".[dev]" -c constraints.txt

VOLUME ["/app/runs", "/app/latency_tables", "/cache"]
# The README's main job.
CMD ["python", "-m", "pipeline", "run", "--device", "cpu", "--budget", "3.5ms", "--quick"]
