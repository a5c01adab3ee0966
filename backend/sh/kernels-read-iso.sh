# kernels-read-iso.sh (isoadmin-read-iso): 64 KiB blocks of an imported ISO's volume on its dom0, to list its
# boot entries.
#
# Inputs: $1 the volume, $2 the first block, $3 how many blocks. Output: their bytes.

dd if="$1" bs=65536 skip="$2" count="$3" iflag=fullblock status=none
