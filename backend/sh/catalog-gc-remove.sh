# catalog-gc-remove.sh (isoadmin-gc): remove an old upload only while it is the one listed: its inode, size and
# mtime are checked just before `rm -f` (unlink removes the entry in the owner's folder, never what a link
# points at).
#
# Inputs: $1 the upload's path, $2 `INODE SIZE MTIME` as listed.
# Output: none; exit 3 `gone`, 4 `changed since it was listed` (on stderr).

path=$1 expected=$2
now=$(stat -c '%i %s %Y' -- "$path" 2>/dev/null) || { echo "gone" >&2; exit 3; }
[ "$now" = "$expected" ] || { echo "changed since it was listed" >&2; exit 4; }
rm -f -- "$path"
