# download-cache-lookup.sh (isoadmin-cache-lookup): the cached object for a cache key.
#
# Inputs: $1 the cache folder, $2 the key. Output: `hit SHA256 SIZE` or `miss`.

cache=$1 key=$2
if [ -n "$key" ] && [ -f "$cache/keys/$key" ]; then
  o=$(head -n 1 "$cache/keys/$key")
  case $o in *[!0-9a-f]*|'') ;; *) [ -f "$cache/objects/$o" ] && { echo "hit $o $(stat -c %s -- "$cache/objects/$o")"; exit 0; } ;; esac
fi
echo miss
