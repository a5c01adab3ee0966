# lvm-loop-up.sh (isoadmin-lvloop-up): emulated activation for hosts without device-mapper (test machines
# only): /dev/VG/LV becomes a link to a loop device over the PV file at the LV's extent offset.
#
# Inputs: $1 the volume group, $2 the LV, $3 the PV's backing file.
# Output: none; exit 4 the LV has more than one segment, 5 no loop device.

set -u
vg=$1 lv=$2 file=$3
[ "$(lvs --noheadings -o seg_count -- "$vg/$lv" | tr -d ' ')" = 1 ] || { echo "$vg/$lv has more than one segment" >&2; exit 4; }
range=$(lvs --noheadings --segments -o seg_pe_ranges -- "$vg/$lv" | tr -d ' ')
first=${range##*:}; first=${first%%-*}
pe_start=$(pvs --noheadings --nosuffix --units b -o pe_start -- "${range%%:*}" | tr -d ' ')
extent=$(vgs --noheadings --nosuffix --units b -o vg_extent_size -- "$vg" | tr -d ' ')
size=$(lvs --noheadings --nosuffix --units b -o lv_size -- "$vg/$lv" | tr -d ' ')
dev=$(losetup -f --show --offset $((pe_start + first * extent)) --sizelimit "$size" -- "$file") || exit 5
mkdir -p "/dev/$vg" && ln -sfn "$dev" "/dev/$vg/$lv"
