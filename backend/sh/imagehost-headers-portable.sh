# imagehost-headers-portable.sh (isoadmin-headers): imagehost-headers.sh for the hosts whose listing is the
# portable one (BusyBox): the same output, each file opened as lib-open-upload.sh says (prepended by
# backend/imagehost.py): with O_NOFOLLOW where dd has it, else once, read only when the file opened is the
# regular file the path named (a stat before each read; the messages of a failed open are discarded: they would
# hold the owner's file name).
#
# Inputs: $1 the marker; $2... the paths.
# Output: stdout, the headers in order, each padded with NULs to 64 KiB; stderr, for each path the marker line
#   then dd's report ("N+M records out").

export LC_ALL=C
mark=$1; shift
for p in "$@"; do
  printf '%s\n' "$mark" >&2
  if [ -f "$p" ] && [ ! -L "$p" ] && open_upload "$p"; then
    # shellcheck disable=SC2154 # nofollow and upload: set by lib-open-upload.sh
    dd if="$upload" bs=65536 count=1 iflag="${nofollow:+$nofollow,}fullblock" conv=sync
  fi
done
