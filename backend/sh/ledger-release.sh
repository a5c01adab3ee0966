# ledger-release.sh (isoadmin-unlock): write a job's final record, drop its lease, and drop the upload's lock if
# this job holds it. Runs after lib-put.sh.
#
# Inputs: $1 ledger folder, $2 upload key, $3 job id, $4 the final record (one line of JSON).
# Output: none; exit 1 when the record cannot be written, else 0.

set -u
L=$1 key=$2 job=$3 record=$4
put "$L/jobs/$job.json" "$record" || exit 1
rm -f -- "$L/leases/$job"
if [ -f "$L/locks/$key/holder" ]; then
  read -r h rest < "$L/locks/$key/holder"
  [ "$h" = "$job" ] || exit 0
fi
rm -f -- "$L/locks/$key/holder"
rmdir -- "$L/locks/$key" 2>/dev/null
exit 0
