# Worker image: CPU-only PyTorch, then this package and its dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Installed first and on its own layer: the CPU wheel is ~200 MB instead of the multi-GB CUDA
# build PyPI would resolve, and it survives code changes in the build cache.
RUN pip install torch --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY profiles ./profiles
COPY schemas ./schemas
RUN pip install . && rm -rf /src

# Unprivileged, with a writable working directory: Faust keeps its local state under the cwd.
RUN useradd --create-home --uid 10001 app
USER app
WORKDIR /home/app

EXPOSE 6066
CMD ["python", "-m", "stream", "worker"]
