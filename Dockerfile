# Image for the stripe-ledger workers (migrate / ingest / consume / project); see docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The pinned, hashed dependencies first (a layer that changes only with the lock), then the
# project on top without resolving again.
COPY requirements/runtime.lock /app/requirements/runtime.lock
RUN pip install --require-hashes -r requirements/runtime.lock
COPY . /app
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin ledger
USER ledger
CMD ["stripe-ledger", "--help"]
