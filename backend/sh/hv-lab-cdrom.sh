# hv-lab-cdrom.sh (isoadmin-lab-cdrom): the volume in a lab VM's CD-ROM drive (where its `cdrom` link leads).
#
# Input: $1 the VM's folder. Output: the volume, or nothing; exit 3 no such domain.

[ -d "$1" ] || exit 3; readlink -- "$1/cdrom"; exit 0
