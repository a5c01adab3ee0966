# ledger-save.sh (isoadmin-journal): rewrite a job's record on the ledger, atomically. Runs after lib-put.sh.
#
# Inputs: $1 ledger folder, $2 job id, $3 the record (one line of JSON). Output: none; non-zero on failure.

set -u
mkdir -p -- "$1/jobs" && put "$1/jobs/$2.json" "$3"
