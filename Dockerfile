# leadpulse worker image: multi-stage, slim, non-root, RocksDB tables on a volume.
#   docker build -t leadpulse .
#   docker run -v leadpulse-data:/data -e KAFKA_BOOTSTRAP_SERVERS=... leadpulse
# The same image runs the CLI (`leadpulse simulate ...`): override the entrypoint.

# -- build: wheels for leadpulse and every dependency (compilers stay in this stage) ----------------
FROM python:3.11-slim AS build
WORKDIR /src
# gcc: setup.py compiles the scoring core's hot modules with Cython (the pure-Python source stays the reference).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --upgrade pip wheel "setuptools>=77" "Cython==3.3.1"
COPY pyproject.toml setup.py README.md ./
COPY streams streams
COPY agents agents
COPY scoring scoring
COPY tools tools
COPY collector collector
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[tools]' \
 && python setup.py -q build_ext --inplace

# -- runtime -----------------------------------------------------------------------------------------
FROM python:3.11-slim
# A numeric uid/gid, so Kubernetes' runAsNonRoot can verify the image without a securityContext uid.
RUN groupadd --gid 10001 leadpulse \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin leadpulse
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# The codec reads the Avro contracts from ./schemas beside the packages, so the code runs from
# /app (PYTHONPATH puts it before the copy of the same packages installed with the wheel; the
# wheel is installed for its dependencies and the `leadpulse` console script).
COPY schemas /app/schemas
COPY streams /app/streams
COPY agents /app/agents
# scoring with its compiled modules beside the source (built above; `leadpulse_scoring_build_info` says which runs)
COPY --from=build /src/scoring /app/scoring
COPY tools /app/tools
COPY collector /app/collector
RUN mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEADPULSE_DATA_DIR=/data \
    LEADPULSE_WEB_BIND=0.0.0.0 \
    LEADPULSE_WEB_PORT=6066
# RocksDB table partitions live here: keep them on a volume so a restart does not replay changelogs.
VOLUME ["/data"]
EXPOSE 6066
# Liveness only (the web server answers during table recovery too); readiness is /health/ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('LEADPULSE_WEB_PORT', '6066'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "agents"]
CMD ["worker", "-l", "info"]
