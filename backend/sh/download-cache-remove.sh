# download-cache-remove.sh (isoadmin-cache-remove): remove cache entries: their objects, metadata and the keys
# pointing at them.
#
# Inputs: $1 the cache folder; $2... the objects' sha256 (anything else is skipped). Output: none.

cache=$1; shift
for o in "$@"; do
  case $o in *[!0-9a-f]*|'') continue ;; esac
  rm -f -- "$cache/objects/$o" "$cache/objects/$o.meta" "$cache/objects/$o.hits" "$cache/objects/$o.owners"
  grep -lx -- "$o" "$cache"/keys/* 2>/dev/null | while read -r k; do rm -f -- "$k"; done
done
