# alert-classifier service image: API + consumer (`run`/`serve`) or consumer only (`worker`).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OMP_NUM_THREADS=1 \
    ALERT_CLASSIFIER_DATA_DIR=/data

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
WORKDIR /app

COPY pyproject.toml README.md ./
COPY streaming ./streaming
COPY models ./models
COPY service ./service
RUN pip install .

USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2).status == 200 else 1)"

ENTRYPOINT ["alert-classifier"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
