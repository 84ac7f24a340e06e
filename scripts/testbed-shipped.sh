#!/usr/bin/env bash
# Run the three shipped testbed scenarios (scenarios/*.toml) one after the
# other with real daemons on loopback; each prints its verdict.  Exit 1 if
# any verdict fails.  Results: ${OUT:-testbed-results}/NAME/.
#
#   scripts/testbed-shipped.sh            (about 2 minutes on 2 cores; the 50-node one needs ~2.3 GB RAM)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-testbed-results}
status=0
for name in sketch ring20-partition regular50-kills; do
    rm -rf "$out/$name"
    mvds testbed run "scenarios/$name.toml" --out "$out/$name" || status=1
done
exit $status
