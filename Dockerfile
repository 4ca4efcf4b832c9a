# The search service on a CUDA-capable PyTorch image, `optuna-run` as the entrypoint.
#   docker build -t lstm-panel-search .
#   docker run --rm --gpus all -e OPTUNA_STORAGE=postgresql+psycopg://USER:PASSWORD@HOST/DB \
#       lstm-panel-search --config studies/default.toml --n-trials 100
# docker-compose.yml runs it as scalable workers beside PostgreSQL and optuna-dashboard
# (and, with --profile proxy, the gRPC storage proxy: `optuna-run proxy`).
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The base image's torch (CUDA build) satisfies the project's torch requirement and stays.
COPY pyproject.toml README.md ./
COPY data ./data
COPY models ./models
COPY search ./search
RUN pip install --no-cache-dir ".[grpc,tree]" \
    && groupadd --gid 10001 search \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin search \
    && mkdir -p /app/studies \
    && chown 10001:10001 /app/studies
COPY --chown=10001:10001 studies/*.toml ./studies/

# Not root: the user "search".
USER 10001:10001
RUN optuna-run --help > /dev/null

# The study TOMLs' relative data paths resolve against /app/studies.
ENTRYPOINT ["optuna-run"]
CMD ["--config", "studies/default.toml"]
