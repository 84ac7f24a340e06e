#!/usr/bin/env bash
# Pairing two new nodes with one command each: an invite code instead of ids.
# Run it from an empty folder: bash examples/pairing.sh
set -euo pipefail

mvds init carol --listen 127.0.0.1:7411 > /dev/null
mvds init dave --listen 127.0.0.1:7412 > /dev/null
mvds run carol 2> carol.log &                    # invite and accept need running daemons
mvds run dave 2> dave.log &
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
until mvds status carol --json | grep -q '"running":true' &&
      mvds status dave --json | grep -q '"running":true'; do sleep 0.2; done

CODE=$(mvds invite carol --group chat --name dave --expires 10m)   # on carol's machine
mvds accept dave "$CODE" --name carol                              # on dave's: one line back

mvds send carol chat "hello dave" --wait-ack dave   # both sides trust each other now
mvds send dave chat "hello carol" --wait-ack carol
mvds tail dave
mvds accept dave "$CODE" --timeout 3s || echo "a code works once"
