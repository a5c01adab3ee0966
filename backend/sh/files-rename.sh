# files-rename.sh (isoadmin-rename): rename a `files` volume (staging to final) with its new metadata, written
# before the volume is renamed. Runs after lib-put-meta.sh.
#
# Inputs: $1 the storage folder, $2 the old name, $3 the new name, $4 the new metadata (one line of JSON).
# Output: none; exit 17 the new name exists, 2 no such volume or empty metadata, 1 the rename failed.

set -u
dir=$1 old=$2 new=$3 meta=$4
[ -n "$meta" ] || { echo "empty metadata" >&2; exit 2; }
[ -f "$dir/$old.img" ] || { echo "volume $old does not exist" >&2; exit 2; }
[ ! -e "$dir/$new.img" ] || { echo "volume $new exists" >&2; exit 17; }
put_meta "$dir/$new.meta" "$meta" || exit 1
# shellcheck disable=SC2015 # undo the metadata when the rename fails or left the old name (mv -n refused)
mv -T -n -- "$dir/$old.img" "$dir/$new.img" && [ ! -e "$dir/$old.img" ] || { rm -f -- "$dir/$new.meta"; exit 1; }
rm -f -- "$dir/$old.meta"
