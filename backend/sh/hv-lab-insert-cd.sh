# hv-lab-insert-cd.sh (isoadmin-insert-cd): put a volume into a lab VM's CD-ROM drive (its `cdrom` link,
# replaced with one rename).
#
# Inputs: $1 the VM's folder, $2 the volume. Output: none; exit 1 no such domain.

vm=$1 dev=$2
[ -d "$vm" ] || { echo "no such domain" >&2; exit 1; }
ln -sfn -- "$dev" "$vm/.cdrom" && mv -T -- "$vm/.cdrom" "$vm/cdrom"
