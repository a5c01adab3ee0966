# hv-lab-attach-new.sh (isoadmin-lab-attach): the lab hypervisor's hot-plug without a serial: a new xvdX device
# in the image host's /sys/block (SYS/xvdX/size, in 512-byte sectors) and /dev (DEV/xvdX, a link to the
# volume), as a Xen PV disk shows.
#
# Inputs: $1 the volume, $2 the image host's /sys/block, $3 its /dev.
# Output: none; exit 1 and a message on stderr when no xvd name is free.

dev=$1 sys=$2 devdir=$3
size=$(stat -L -c %s -- "$dev") || exit 1
for c in b c d e f g h i j k l m n o p q r s t u v w x y z; do
  name=xvd$c
  mkdir -- "$sys/$name" 2>/dev/null || continue
  ln -s -- "$dev" "$devdir/$name" || { rmdir -- "$sys/$name"; exit 1; }
  echo $((size / 512)) > "$sys/$name/.size" && mv -- "$sys/$name/.size" "$sys/$name/size"
  exit 0
done
echo "no free xvd name" >&2
exit 1
