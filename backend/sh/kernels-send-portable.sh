# kernels-send-portable.sh (isoadmin-send): kernels-send.sh for the hosts whose listing is the portable one
# (BusyBox): the upload is opened as lib-open-upload.sh says (prepended by backend/kernels.py): with O_NOFOLLOW
# where dd has it, else once, and read only when the file opened is the regular file whose inode `before`
# shows.
#
# Input: $1 the upload's path.
# Output: its bytes; stderr `before SIZE MTIME INODE` and `after SIZE MTIME INODE`. Exit 3 when it is not a
#   regular file, 1 when the read fails or the file opened is not the one listed.

p=$1
# shellcheck disable=SC2015 # the fallback is meant to run when either test fails
[ -f "$p" ] && [ ! -L "$p" ] || { echo "not a regular file" >&2; exit 3; }
before=$(stat -c '%s %Y %i' -- "$p")
printf 'before %s\n' "$before" >&2
open_upload "$p" "${before##* }" || exit 1
# shellcheck disable=SC2154 # nofollow and upload: set by lib-open-upload.sh
dd if="$upload" ${nofollow:+"iflag=$nofollow"} bs=1M status=none || exit 1
printf 'after %s\n' "$(stat -c '%s %Y %i' -- "$p")" >&2
