# files-create.sh (isoadmin-create): create a `files` volume (a sparse file) with its metadata, which is written
# and fsynced first. Runs after lib-put-meta.sh (prepended by backend/storage/files.py).
#
# Inputs: $1 the storage folder, $2 the volume's name, $3 its size in bytes, $4 its metadata (one line of JSON).
# Output: none; exit 17 the volume exists, 2 empty metadata, 1 a write failed.

set -u
dir=$1 name=$2 size=$3 meta=$4
[ -n "$meta" ] || { echo "empty metadata" >&2; exit 2; }
printf '%s\n' "$meta" | dd of="$dir/$name.meta.tmp.$$" conv=fsync status=none || exit 1
( set -C; : > "$dir/$name.img" ) 2>/dev/null || { rm -f -- "$dir/$name.meta.tmp.$$"; echo "volume $name exists" >&2; exit 17; }
mv -f -- "$dir/$name.meta.tmp.$$" "$dir/$name.meta" || exit 1
truncate -s "$size" -- "$dir/$name.img" || { rm -f -- "$dir/$name.img" "$dir/$name.meta"; exit 1; }
