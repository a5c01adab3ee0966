# download-cache-list.sh (isoadmin-cache-list): every entry of the downloads cache.
#
# Input: $1 the cache folder.
# Output: `now EPOCH`; for each object `entry SHA256 SIZE CREATED HITS URL` and one `owner NAME` line per owner
#   it was downloaded for.

cache=$1
now=$(date +%s)
printf 'now %s\n' "$now"
for f in "$cache"/objects/*.meta; do
  [ -f "$f" ] || continue
  o=${f%.meta}
  [ -f "$o" ] || continue
  hits=0; [ -f "$o.hits" ] && hits=$(wc -l < "$o.hits")
  printf 'entry %s %s %s %s %s\n' "${o##*/}" "$(stat -c %s -- "$o")" "$(date -r "$f" +%s)" "$hits" \
    "$(sed -n 's/^url //p' "$f" | head -n 1)"
  [ ! -f "$o.owners" ] || sort -u -- "$o.owners" | sed 's/^/owner /'
done
