# files-write-meta.sh (isoadmin-meta): rewrite a `files` volume's metadata. Runs after lib-put-meta.sh.
#
# Inputs: $1 the storage folder, $2 the volume's name, $3 the metadata (one line of JSON).
# Output: none; exit 2 no such volume or empty metadata.

set -u
[ -n "$3" ] && [ -f "$1/$2.img" ] || exit 2
put_meta "$1/$2.meta" "$3"
