# ledger-audit-read.sh (isoadmin-audit-read): the audit log's head and what was appended since a console's last
# read.
#
# Inputs: $1 ledger folder, $2 the first byte to read (1-based, as `tail -c +N`).
# Output: `head COUNT SHA256` (when audit.head exists), a line `--`, then the log's bytes from $2 on. Exit 0.

cd -- "$1" 2>/dev/null || exit 0
[ -r audit.head ] && sed 's/^/head /' audit.head
echo --
[ -f audit.jsonl ] && tail -c +"$2" -- audit.jsonl
exit 0
