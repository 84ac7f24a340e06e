# One mvds node: `mvds run` on the volume /data (see docker-compose.yml).
#
# BASE_IMAGE is any image with python3 (3.11 or newer) and its venv module:
# the public python:3.12-slim by default; where no registry can be reached,
# scripts/docker-base-image.sh builds one (debootstrap, no registry).
# If wheels/ holds wheels (scripts/docker-wheels.sh) the install uses only
# them (--no-index: the build needs no network); otherwise the package index.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

ENV PATH=/opt/mvds/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY . /src
RUN set -eu; \
    python3 -m venv /opt/mvds; \
    if ls /src/wheels/*.whl >/dev/null 2>&1; then \
        /opt/mvds/bin/pip install --no-cache-dir --disable-pip-version-check --quiet \
            --no-index --find-links /src/wheels /src \
        || { echo "wheels/ does not fit this base image: run scripts/docker-wheels.sh" \
                  "$BASE_IMAGE, or remove wheels/ to install from the index" >&2; exit 1; }; \
    else \
        /opt/mvds/bin/pip install --no-cache-dir --disable-pip-version-check --quiet /src; \
    fi; \
    install -m 0755 /src/docker/mvds-node /usr/local/bin/mvds-node; \
    rm -rf /src; \
    useradd --system --uid 10001 --user-group --home-dir /data --no-create-home mvds; \
    mkdir -p /data /peers; \
    chown mvds:mvds /data /peers; \
    mvds --version

# The node's identity (identity.key, mode 0600), settings and store live in
# /data, a volume: nothing secret is in the image.  /peers is shared by the
# nodes of a network and holds only peer ids (public keys).
USER mvds
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7400/udp
ENTRYPOINT ["mvds-node"]
