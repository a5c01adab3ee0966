# hv-lab-detach-new.sh (isoadmin-lab-detach): undo hv-lab-attach-new.sh for a volume: remove every xvdX device
# of it, and check none is left.
#
# Inputs: $1 the volume, $2 the image host's /sys/block, $3 its /dev. Output: none; exit 1 when one is left.

dev=$1 sys=$2 devdir=$3
for l in "$devdir"/xvd*; do
  if [ -L "$l" ] && [ "$(readlink -- "$l")" = "$dev" ]; then
    rm -f -- "$l"; rm -rf -- "${sys:?}/${l##*/}"
  fi
done
for l in "$devdir"/xvd*; do
  [ -L "$l" ] && [ "$(readlink -- "$l")" = "$dev" ] && exit 1
done
exit 0
