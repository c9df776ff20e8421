# syntax=docker/dockerfile:1
# One image for every role of OpenRide Booking; the first argument picks the role:
#   worker | sink | gateway | topics | migrate   (anything else is run as a command)
# Build: docker build -t openride-booking:dev .      Run: docker run openride-booking:dev gateway
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the dependencies into a virtualenv, with whatever a source build needs ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only the dependency list, so code changes do not re-install them. The project itself is
# not installed: it runs from /app, where sinks.migrate finds migrations/ beside it.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && pip install --upgrade pip \
 && pip install -r requirements.txt

# --- runtime: no compiler, no pip cache, a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 openride \
 && useradd --system --uid 10001 --gid openride --home-dir /app --no-create-home --shell /usr/sbin/nologin openride \
 && mkdir -p /data/worker \
 && chown -R openride:openride /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code stays root-owned: the service user can read it, not change it.
COPY app ./app
COPY gateway ./gateway
COPY sinks ./sinks
COPY tools ./tools
COPY migrations ./migrations
COPY deploy/entrypoint.sh deploy/healthcheck.py ./deploy/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    WORKER_DATADIR=/data/worker
USER 10001:10001
EXPOSE 8000
# gateway: GET /health/ready; worker and sink: their consumer group lists this member.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["gateway"]
