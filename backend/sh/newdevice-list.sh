# newdevice-list.sh (isoadmin-block-devices): the image host's block devices and their sizes.
#
# Input: $1 its /sys/block. Output: `NAME SECTORS` per device (512-byte sectors). Exit 0.

for d in "$1"/*; do
  [ -r "$d/size" ] && printf '%s %s\n' "${d##*/}" "$(cat "$d/size" 2>/dev/null)"
done
exit 0
