# alert-classifier: `serve` (API), `run --rate 0` (API + consumer) or `worker` (consumer only).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OMP_NUM_THREADS=1 \
    ALERT_CLASSIFIER_DATA_DIR=/data \
    ALERT_CLASSIFIER_HOST=0.0.0.0

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
WORKDIR /app

# Dependencies first (a layer that changes rarely), then the code and the model artefacts.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY streaming ./streaming
COPY models ./models
COPY service ./service
RUN pip install -c constraints.txt .

USER app
# The feature kernels compiled once into the image (numba's cache in the user's home: the installed
# package is read-only), not at every start; from /tmp so that the installed package is the one compiled
RUN cd /tmp && python -c "from service.runtime import compile_kernels; compile_kernels()"
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)" || exit 1

ENTRYPOINT ["alert-classifier"]
CMD ["serve"]
