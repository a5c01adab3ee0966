# imagehost-headers.sh (isoadmin-headers): the first 64 KiB of each upload, for its ISO facts.
#
# One `dd` per file (no other process): it writes the header to stdout, padded with NULs to 64 KiB
# (`conv=sync`), and its "records out" count to stderr after a marker line, so the stdout stream can be cut
# without any encoding: a record written means 64 KiB follow, none means nothing does. The marker holds a
# random nonce, so no file name in a dd error message can forge one. Only regular files that are no symlink
# are opened, without following a link (O_NOFOLLOW) and without blocking (O_NONBLOCK: a fifo swapped in): GNU dd.
# Hosts whose listing is the portable one get imagehost-headers-portable.sh instead.
#
# Inputs: $1 the marker; $2... the paths.
# Output: stdout, the headers in order; stderr, for each path the marker line then dd's report.

export LC_ALL=C
mark=$1; shift
for p in "$@"; do
  printf '%s\n' "$mark" >&2
  if [ -f "$p" ] && [ ! -L "$p" ]; then
    dd if="$p" bs=65536 count=1 iflag=nofollow,nonblock,fullblock conv=sync
  fi
done
