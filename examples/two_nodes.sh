#!/usr/bin/env bash
# Two nodes on one machine, end to end, with every everyday command.
# Run it from an empty folder: bash examples/two_nodes.sh
set -euo pipefail

mvds init alice --listen 127.0.0.1:7401        # prints alice's peer id
mvds init bob --listen 127.0.0.1:7402
mvds peer add alice bob "$(mvds id bob)" 127.0.0.1:7402 --group chat
mvds peer add bob alice "$(mvds id alice)" 127.0.0.1:7401 --group chat

mvds run alice --log-format json 2> alice.log &   # the daemons; Ctrl-C or SIGTERM stops them
mvds run bob --log-format json 2> bob.log &
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
until mvds status alice --json | grep -q '"running":true' &&
      mvds status bob --json | grep -q '"running":true'; do sleep 0.2; done

mvds send alice chat "hello bob"                # prints the message id once it is stored
printf 'one\ntwo\n' | mvds send alice chat --lines
echo "any bytes" > note.bin && mvds send alice chat --file note.bin

until [ "$(mvds tail bob --json | wc -l)" -ge 4 ]; do sleep 0.2; done
mvds tail bob                                   # seq, time (UTC), group, via (the neighbour), text
mvds tail bob --json --since 2                  # resume after seq 2, as JSON lines
mvds send bob chat "got them" --wait-ack alice  # returns once alice holds it
mvds tail alice --all                           # alice's own messages and bob's, in one sequence
mvds groups alice                               # groups, their ids, the peers sharing them
mvds status alice                               # peers, reachability, sync progress, traffic
mvds doctor alice                               # why nothing flows, if it does not
