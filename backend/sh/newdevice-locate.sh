# newdevice-locate.sh (isoadmin-locate-new): the block device that appeared since an attach.
#
# Polls until at least one device that is new (not among $4...) has exactly the wanted size, then looks once
# more after a short pause (a second disk appearing at the same moment must be seen, not missed).
#
# Inputs: $1 the image host's /sys/block, $2 the size in bytes, $3 how many tries (0.1 s apart), $4... the
#   devices there before the attach.
# Output: `NAME BYTES` for every new device. Exit 0.

sys=$1 want=$2 tries=$3
shift 3
scan() {
  hits=0
  for d in "$sys"/*; do
    [ -r "$d/size" ] || continue
    name=${d##*/} old=0
    for b in "$@"; do [ "$b" = "$name" ] && { old=1; break; }; done
    [ "$old" = 1 ] && continue
    bytes=$(( $(cat "$d/size" 2>/dev/null || echo 0) * 512 ))
    [ "$bytes" = "$want" ] && hits=$((hits + 1))
    [ -n "$print" ] && printf '%s %s\n' "$name" "$bytes"
  done
}
print='' i=0
while [ "$i" -lt "$tries" ]; do
  scan "$@"
  [ "$hits" -gt 0 ] && break
  i=$((i + 1))
  sleep 0.1
done
sleep 0.3
print=1
scan "$@"
exit 0
