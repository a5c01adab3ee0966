# imagehost-verify.sh (isoadmin-verify, isoadmin-sha): the sha256 of the first SIZE bytes of a disk or volume,
# as the disk holds them. Runs after lib-sha256.sh (prepended by backend/imagehost.py).
#
# The verify must read what the disk holds, not what the page cache remembers: `iflag=nocache count=0` drops
# the device's cached pages first (GNU dd, posix_fadvise DONTNEED; they are clean after the copy's fsync), then
# a plain read with the kernel's readahead takes exactly SIZE bytes (`count_bytes`).
#
# Inputs: $1 the disk or volume, $2 SIZE in bytes.
# Output: one line `HEX ...` (sha256's).

dst=$1 size=$2
dd if="$dst" iflag=nocache count=0 status=none 2>/dev/null
dd if="$dst" bs=4M count="$size" iflag=count_bytes status=none | sha256
