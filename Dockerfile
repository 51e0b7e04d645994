# leadpulse worker image: multi-stage, slim, non-root, RocksDB tables on a volume.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY scoring scoring
COPY tools tools
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[tools]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 leadpulse
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# The codec reads the Avro contracts from ./schemas beside the packages.
COPY schemas /app/schemas
COPY streams /app/streams
COPY agents /app/agents
COPY scoring /app/scoring
COPY tools /app/tools
RUN mkdir -p /data && chown leadpulse /data
USER leadpulse
ENV LEADPULSE_DATA_DIR=/data \
    LEADPULSE_WEB_BIND=0.0.0.0 \
    LEADPULSE_WEB_PORT=6066 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/health/live', timeout=2).status != 200)"
ENTRYPOINT ["python", "-m", "agents"]
CMD ["worker", "-l", "info"]
