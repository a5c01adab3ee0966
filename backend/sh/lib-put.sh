# lib-put.sh: atomic writes on the ledger; prepended to the ledger's writing scripts.
#
# Sets umask 077 (the ledger's files are 0600, its folders 0700) and defines put FILE TEXT: TEXT and a newline go
# to FILE.tmp.PID with fsync (`dd conv=fsync`: coreutils and BusyBox), which is then renamed over FILE, so a
# reader sees the old record or the new one, never a part. Its status is that of the write and the rename.
#
# Inputs: none (a function library). Output: none.

umask 077
put() { printf '%s\n' "$2" | dd of="$1.tmp.$$" conv=fsync status=none && mv -f -- "$1.tmp.$$" "$1"; }
