# ledger-claim.sh (isoadmin-claim): take over a dead job's lease, for its recovery: only when it has expired by
# the ledger host's clock (its mtime against `date`, its TTL the lease's second word) or is missing. Runs after
# lib-put.sh.
#
# Inputs: $1 ledger folder, $2 job id, $3 the new lease line.
# Output: `claimed` or `live`.

set -u
L=$1 job=$2 lease=$3
f=$L/leases/$job
if [ -f "$f" ]; then
  read -r _ ttl rest < "$f" || ttl=0
  case $ttl in ''|*[!0-9]*) ttl=0 ;; esac
  age=$(( $(date +%s) - $(date -r "$f" +%s) ))
  if [ "$age" -le "$ttl" ]; then echo live; exit 0; fi
fi
mkdir -p -- "$L/leases" && put "$f" "$lease" && echo claimed
