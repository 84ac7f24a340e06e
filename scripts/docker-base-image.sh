#!/usr/bin/env bash
# Build the Docker base image for mvds without any container registry:
# debootstrap a minimal Debian bookworm with python3 + python3-venv, then
# `docker import` it.  For machines that cannot pull images (the default
# base, python:3.12-slim, needs a registry).
#
#   sudo scripts/docker-base-image.sh [--force] [TAG]     (default TAG: mvds-base:bookworm)
#   MVDS_BASE_IMAGE=mvds-base:bookworm docker compose up --build
#
# Needs root, debootstrap and a Debian mirror (MVDS_DEBIAN_MIRROR, default:
# the first Debian mirror apt uses on this machine, else deb.debian.org).
# Does nothing if TAG already exists, unless --force.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
tag=${1:-mvds-base:bookworm}
suite=bookworm

say() { printf 'docker-base-image: %s\n' "$*" >&2; }

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    say "$tag already exists (--force rebuilds it)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then say "needs root (debootstrap)"; exit 1; fi
command -v debootstrap >/dev/null || { say "needs debootstrap (apt-get install debootstrap)"; exit 1; }

# The mirror apt already uses here (deb822 .sources files or one-line lists).
mirror=${MVDS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(
        { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
          grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
              sed 's/\[[^]]*\]//' | awk '{print $2}'
        } | grep -E '/debian/?$' | head -n 1
    ) || true
    mirror=${mirror:-http://deb.debian.org/debian}
fi

root=$(mktemp -d /tmp/mvds-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
say "debootstrap $suite from $mirror"
start=$(date +%s)
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    say "debootstrap failed (full log: $root.log)"
    exit 1
fi
rm -f "$root.log"

# What an image does not need: package caches and lists, docs, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/tmp/*

say "docker import as $tag"
tar --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
        -C "$root" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $suite + python3, python3-venv" \
        - "$tag" >/dev/null
say "$tag: $(docker run --rm "$tag" python3 --version) in $(( $(date +%s) - start )) s"
say "use it: MVDS_BASE_IMAGE=$tag docker compose up -d --build, or once: echo MVDS_BASE_IMAGE=$tag >> .env"
