# ledger-renew.sh (isoadmin-renew): renew a job's lease; only its holder (the lease's first word) may. Runs after
# lib-put.sh.
#
# Inputs: $1 ledger folder, $2 job id, $3 this console's holder id, $4 the new lease line.
# Output: none. Exit 4 when the lease is gone or someone else's: the job has been taken over (recovered) and
#   must stop.

set -u
L=$1 job=$2 me=$3 lease=$4
f=$L/leases/$job
[ -f "$f" ] || exit 4
read -r h rest < "$f" || exit 4
[ "$h" = "$me" ] || exit 4
put "$f" "$lease"
