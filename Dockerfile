FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/quorum.db PORT=3000

WORKDIR /app
# Installed with the versions the test suite ran with (constraints.txt), not whatever is newest.
COPY constraints.txt pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY handlers ./handlers
COPY templates ./templates
RUN pip install --disable-pip-version-check -c constraints.txt . \
    && groupadd --gid 10001 quorum && useradd --create-home --uid 10001 --gid 10001 quorum \
    && mkdir /data && chown quorum /data

USER 10001
VOLUME ["/data"]
EXPOSE 3000
# Both modes answer /healthz on PORT: `quorum serve` and `quorum socket` (healthy while its
# WebSocket to Slack is connected and the database answers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
CMD ["quorum", "serve"]
