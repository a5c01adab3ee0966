# files-list.sh (isoadmin-volumes): the `files` storage's report: its file system's size, its volumes and their
# metadata.
#
# Input: $1 the storage folder.
# Output: `df SIZE AVAILABLE` (bytes), `img SIZE ./NAME.img` per volume, `meta ./NAME.meta:LINE` per metadata
#   line. Exit 3 when the folder cannot be entered.

dir=$1
cd -- "$dir" || exit 3
# the file system's size and the space available to others than root, in bytes (as df -B1 --output=size,avail)
stat -f -c '%S %b %a' . | { read -r bsize blocks avail && echo "df $((bsize * blocks)) $((bsize * avail))"; }
find . -maxdepth 1 -type f -name '*.img' -exec stat -c 'img %s %n' -- {} +
find . -maxdepth 1 -type f -name '*.meta' -exec grep -H '' {} + | sed 's/^/meta /'
exit 0
