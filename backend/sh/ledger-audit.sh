# ledger-audit.sh (isoadmin-audit): append one entry to the audit log. Runs after lib-sha256.sh and lib-put.sh
# (prepended by backend/ledger.py).
#
# Under the audit lock (mkdir audit.lock), read the head (count, sha256 of the last line), write
# {"prev": HEAD, ...entry} with O_APPEND and fsync, then the new head atomically. A lock left by a killed
# append (older than 30 s by this host's clock) is broken.
#
# Inputs: $1 ledger folder, $2 the entry (a JSON object without "prev", on one line).
# Output: none. Exit 3 the folder cannot be made, 5 the log stayed locked (a message on stderr), 1 the append
#   failed.

set -u
L=$1 entry=$2
mkdir -p -- "$L" || exit 3
cd -- "$L" || exit 3
i=0
until mkdir audit.lock 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 200 ]; then
    if [ $(( $(date +%s) - $(date -r audit.lock +%s 2>/dev/null || date +%s) )) -gt 30 ]; then
      rmdir audit.lock 2>/dev/null; i=0; continue
    fi
    echo "audit log is locked (audit.lock)" >&2; exit 5
  fi
  sleep 0.05
done
count=0 prev=0000000000000000000000000000000000000000000000000000000000000000
[ -r audit.head ] && read -r count prev < audit.head
if [ -s audit.jsonl ] && [ "$(tail -c 1 audit.jsonl | od -An -c | tr -d ' ')" != '\n' ]; then
  printf '\n' >> audit.jsonl   # a torn last line stays torn (and is reported), the next starts clean
fi
line="{\"prev\":\"$prev\",${entry#\{}"
printf '%s\n' "$line" | dd of=audit.jsonl oflag=append conv=notrunc,fsync status=none || { rmdir audit.lock; exit 1; }
hash=$(printf '%s' "$line" | sha256 | cut -c1-64)
put audit.head "$((count + 1)) $hash"
rmdir audit.lock
