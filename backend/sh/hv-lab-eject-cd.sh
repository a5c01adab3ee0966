# hv-lab-eject-cd.sh (isoadmin-eject-cd): empty a lab VM's CD-ROM drive.
#
# Input: $1 the VM's folder. Output: the volume that was in it (or nothing); exit 1 no such domain.

vm=$1
[ -d "$vm" ] || { echo "no such domain" >&2; exit 1; }
readlink -- "$vm/cdrom" || true
rm -f -- "$vm/cdrom"
