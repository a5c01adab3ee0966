# ledger-fetch.sh (isoadmin-ledger-fetch): the first line of older ledger records a console has not seen yet.
#
# Inputs: $1 the ledger folder; $2... record files relative to it (jobs/ID.json, rejections/NAME.json).
# Output: `data NAME FIRST-LINE` for each that is a file; exit 3 when the folder cannot be entered, else 0.

cd -- "$1" || exit 3
shift
for f; do [ -f "$f" ] && printf 'data %s %s\n' "$f" "$(head -n 1 -- "$f")"; done
exit 0
