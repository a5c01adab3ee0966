# imagehost-locate.sh (isoadmin-locate): find the hot-plugged disk with a serial inside the image host, by
# /sys/block/*/serial (virtio-blk), then by a link ending in the serial in each by-id folder; polls every 0.1 s.
#
# Inputs: $1 the serial, $2 how many tries, $3... by-id folders (/dev/disk/by-id).
# Output: the device path (/dev/vdb, or where the by-id link leads); exit 3 and a message on stderr when no
#   such disk appeared.

serial=$1 tries=$2
shift 2
i=0
while [ "$i" -lt "$tries" ]; do
  for d in /sys/block/*; do
    if [ -r "$d/serial" ] && [ "$(cat "$d/serial" 2>/dev/null)" = "$serial" ]; then
      echo "/dev/${d##*/}"; exit 0
    fi
  done
  for dir in "$@"; do
    for f in "$dir"/*"$serial"; do
      [ -e "$f" ] && { readlink -f -- "$f"; exit 0; }
    done
  done
  i=$((i + 1))
  sleep 0.1
done
echo "no disk with serial $serial" >&2
exit 3
