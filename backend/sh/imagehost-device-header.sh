# imagehost-device-header.sh (isoadmin-device-header): the first bytes of a disk inside the image host (after a
# copy, to read the landed ISO's facts again).
#
# Inputs: $1 the device, $2 how many bytes. Output: those bytes.

dd if="$1" bs="$2" count=1 iflag=fullblock status=none
