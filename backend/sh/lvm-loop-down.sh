# lvm-loop-down.sh (isoadmin-lvloop-down): undo lvm-loop-up.sh: remove /dev/VG/LV and detach its loop device.
#
# Inputs: $1 the volume group, $2 the LV. Output: none. Exit 0.

vg=$1 lv=$2
link=/dev/$vg/$lv
if [ -L "$link" ]; then dev=$(readlink "$link"); rm -f -- "$link"; losetup -d "$dev" 2>/dev/null; fi
exit 0
