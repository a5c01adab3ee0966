# kernels-send.sh (isoadmin-send): send one upload (an uploaded kernel or ramdisk) on stdout, never through a
# symlink (O_NOFOLLOW: GNU dd), with its size, mtime and inode before and after on stderr. Hosts whose listing
# is the portable one get kernels-send-portable.sh instead.
#
# Input: $1 the upload's path.
# Output: its bytes; stderr `before SIZE MTIME INODE` and `after SIZE MTIME INODE`. Exit 3 when it is not a
#   regular file, 1 when the read fails.

p=$1
# shellcheck disable=SC2015 # the fallback is meant to run when either test fails
[ -f "$p" ] && [ ! -L "$p" ] || { echo "not a regular file" >&2; exit 3; }
printf 'before %s\n' "$(stat -c '%s %Y %i' -- "$p")" >&2
dd if="$p" iflag=nofollow bs=1M status=none || exit 1
printf 'after %s\n' "$(stat -c '%s %Y %i' -- "$p")" >&2
