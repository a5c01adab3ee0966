# imagehost-copy.sh (isoadmin-copy): the one-pass copy of an upload onto a hot-plugged disk, under setsid (its
# PID is its process group: imagehost-kill.sh stops it whole).
#
# The upload is read once from its disk, written onto the target, hashed, and the landed bytes are read back
# behind the writer and proven equal to the upload, so copy and verify together cost about one write.
#
# * The writer writes the upload in segments of SEG MiB, one `dd` and one `write` each (O_DIRECT where the
#   target allows it: the bytes go to the disk, not into the page cache), and after each segment prints its
#   number on a pipe.
# * The read-back reads each segment the writer finished (segment k while k+1 is being written), with O_DIRECT
#   again (from the disk, not from the page cache; without O_DIRECT: the segment is fsynced, its cached pages
#   dropped with GNU `dd iflag=nocache`, then read), into a second sha256 (the last segment cut to the upload's
#   size), which the job compares with the upload's. (`cmp` against the upload instead of the second sha256
#   was measured no faster: it reads in small pieces.)
# * A second reader of the upload (it reads the page cache the writer just filled, on the other core) feeds the
#   sha256 that is recorded. (A `tee` between one reader and both would move the bytes in 8 KiB pieces.)
# The upload is opened without following a link: O_NOFOLLOW and O_NONBLOCK where dd has them, else once, as
# lib-open-upload.sh says (prepended by backend/imagehost.py), and only when it is the file whose inode `before`
# shows. The stat before/after catches an upload changed or swapped during the copy.
#
# Inputs: $1 the upload, $2 the disk, $3 `openssl` or `sha256sum`, $4 the segment size in MiB, $5 the host's
#   dd (`gnu`: O_DIRECT and iflag=nocache are used; else plain writes, each fsynced).
# Output: `pid PID`, `before TYPE SIZE INODE LINKS MTIME`, status lines `read N` (the hashing reader), `write N`
#   (the writer), `readback N` (or `open 1` alone: the upload is not, or no longer, that regular file); digests `upload HEX` and `landed HEX`; `after TYPE SIZE INODE LINKS MTIME`.
#   Progress on stderr: `N bytes written` and `verified N`.

src=$1 dst=$2 sha=$3 seg=$4 ddkind=$5
export LC_ALL=C
sha256() { if [ "$sha" = openssl ]; then openssl dgst -sha256 -r; else sha256sum; fi; }
printf 'pid %s\n' "$$"
before=$(stat -c '%F %s %i %h %Y' -- "$src")
printf 'before %s\n' "$before"
size=${before% * * *}; size=${size##* }
case $size in ''|*[!0-9]*) echo "write 1"; exit 1 ;; esac
ino=${before% * *}; ino=${ino##* }
open_upload "$src" "$ino" || { echo "open 1"; exit 1; }
S=$((seg * 1048576))
segments=$(( (size + S - 1) / S ))
direct=
if [ "$ddkind" = gnu ] && dd if=/dev/null of="$dst" oflag=direct conv=notrunc status=none 2>/dev/null; then
  direct=1
fi
rflag=
[ -z "$direct" ] || rflag=iflag=direct
# shellcheck disable=SC2154 # nofollow and upload: set by lib-open-upload.sh
{ { dd if="$upload" ${nofollow:+"iflag=$nofollow"} bs=4M status=none; echo "read $?" >&3; } | sha256 | sed 's/^/upload /'; } 3>&1 &
{ {
  k=0 rc=0
  while [ "$k" -lt "$segments" ]; do
    if [ -n "$direct" ]; then
      dd if="$upload" of="$dst" iflag="${nofollow:+$nofollow,}fullblock" oflag=direct conv=notrunc bs="${seg}M" \
        skip="$k" seek="$k" count=1 status=none || { rc=$?; break; }
    else
      dd if="$upload" of="$dst" iflag="${nofollow:+$nofollow,}fullblock" conv=notrunc,fsync bs="${seg}M" \
        skip="$k" seek="$k" count=1 status=none || { rc=$?; break; }
    fi
    len=$S
    [ $((k * S + len)) -le "$size" ] || len=$((size - k * S))
    printf '%s %s\n' "$k" "$len"
    printf '%s bytes written\n' $((k * S + len)) >&2
    k=$((k + 1))
  done
  [ "$rc" != 0 ] || dd if=/dev/null of="$dst" conv=notrunc,fsync status=none || rc=$?
  echo "write $rc" >&3
} | {
  rc=0
  while read -r k len; do
    [ -n "$direct" ] || dd if="$dst" iflag=nocache bs="${seg}M" skip="$k" count=0 status=none 2>/dev/null
    if [ "$len" = "$S" ]; then
      dd if="$dst" $rflag bs="${seg}M" skip="$k" count=1 status=none || rc=$?
    else
      dd if="$dst" $rflag bs="${seg}M" skip="$k" count=1 status=none | head -c "$len" || rc=1
    fi
    printf 'verified %s\n' $((k * S + len)) >&2
  done
  echo "readback $rc" >&3
} | sha256 | sed 's/^/landed /'
} 3>&1
wait
printf 'after %s\n' "$(stat -c '%F %s %i %h %Y' -- "$src")"
