# ledger-acquire.sh (isoadmin-lock): take an upload's lock on the ledger (mkdir), then write its holder, the job
# record and the lease. Runs after lib-put.sh (prepended by backend/ledger.py).
#
# Inputs: $1 ledger folder, $2 upload key, $3 job id, $4 holder line (JOB {json}), $5 job record (one line of
#   JSON), $6 lease line.
# Output: nothing when taken (exit 0); exit 17 with the holder line on stdout when the lock is taken already;
#   exit 3 when the ledger's folders cannot be made.

set -u
L=$1 key=$2 job=$3 holder=$4 record=$5 lease=$6
mkdir -p -- "$L/jobs" "$L/locks" "$L/leases" "$L/rejections" || exit 3
if ! mkdir -- "$L/locks/$key" 2>/dev/null; then
  cat -- "$L/locks/$key/holder" 2>/dev/null
  exit 17
fi
put "$L/locks/$key/holder" "$holder" && put "$L/jobs/$job.json" "$record" && put "$L/leases/$job" "$lease"
