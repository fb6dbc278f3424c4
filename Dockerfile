# The project's own services (router, tracker, adapters) for docker-compose.yml.
# Same hash-locked dependencies as a local install.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY broker broker
COPY schemas schemas
COPY adapters adapters
COPY keys keys
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --no-deps . \
 && useradd --system --uid 10001 crb
USER crb
ENTRYPOINT ["crb"]
