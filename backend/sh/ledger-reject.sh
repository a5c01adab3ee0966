# ledger-reject.sh (isoadmin-reject): add one rejection record to the ledger (a file of its own, never
# read-modify-written). Runs after lib-put.sh.
#
# Inputs: $1 ledger folder, $2 the record's name (KEY-TIME-RAND), $3 the record (one line of JSON).
# Output: none; non-zero on failure.

set -u
mkdir -p -- "$1/rejections" && put "$1/rejections/$2.json" "$3"
