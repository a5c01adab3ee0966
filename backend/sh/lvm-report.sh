# lvm-report.sh (isoadmin-lvs): the volume group's and its LVs' report, as JSON (vgs(8), lvs(8)).
#
# Input: $1 the volume group. Output: vgs's JSON then lvs's; exit 3 when either fails.

vg=$1
vgs --reportformat json --units b --nosuffix -o vg_name,vg_size,vg_free,vg_extent_size,vg_free_count -- "$vg" || exit 3
lvs --reportformat json --units b --nosuffix -o lv_name,lv_size,lv_tags,lv_path,seg_count -- "$vg" || exit 3
