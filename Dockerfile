# syntax=docker/dockerfile:1
# The Tryggheim image: the `tryggheim` command (care platform, HL7 endpoints, tools) as a
# non-root user. docker-compose.yml builds it; see README, "Running with docker compose".
#
#   docker build -t tryggheim .                        # the platform image
#   docker build --target simulator -t tryggheim-sim . # plus Mosquitto, for simulated homes

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tryggheim ./tryggheim
COPY edge ./edge
COPY gateway ./gateway
COPY hl7 ./hl7
COPY dashboards ./dashboards
COPY firmware_sim ./firmware_sim
# Wheels of the project and every dependency, so the runtime stage needs no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
# The release step (scripts/release.sh) passes the tag's version; a local build says "dev".
ARG VERSION=dev
LABEL org.opencontainers.image.title="tryggheim" \
      org.opencontainers.image.description="Tryggheim home-care platform: care platform, HL7 endpoints, tools" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed uid/gid so that files in shared volumes (the broker's password file, TLS keys made
# by deploy/compose/make-certs.sh) can be given to it.
RUN groupadd --system --gid 10001 tryggheim \
    && useradd --system --uid 10001 --gid tryggheim --home-dir /var/lib/tryggheim \
       --shell /usr/sbin/nologin tryggheim \
    && mkdir -p /var/lib/tryggheim/broker /var/lib/tryggheim/gp /etc/tryggheim \
    && chown -R tryggheim:tryggheim /var/lib/tryggheim
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels tryggheim
USER 10001:10001
WORKDIR /var/lib/tryggheim
EXPOSE 8080 2575
ENTRYPOINT ["tryggheim"]
CMD ["--help"]

# Simulated homes (`tryggheim simulate`, `tryggheim demo`) run each home's own Mosquitto: the
# simulator stage adds the broker, nothing else.
FROM runtime AS simulator
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
CMD ["demo", "--homes", "5"]

# The default target (the last stage) is the platform image.
FROM runtime
