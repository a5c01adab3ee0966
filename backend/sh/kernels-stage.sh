# kernels-stage.sh (isoadmin-stage-kernel): stage an ISO entry's kernel and ramdisk on the dom0 that holds the
# ISO's final volume, copied out of the volume at their byte extents. Runs after lib-sha256.sh and
# lib-kernel-finish.sh (prepended by backend/kernels.py).
#
# Inputs: $1 the volume, $2 the kernel folder (kernel_dir/OWNER), $3 the set's name, $4 $5 the kernel's offset
#   and length in bytes, $6 $7 the ramdisk's (length 0: none), $8 the command line; stdin: isoadmin.json.
# Output: `staged FOLDER` or `exists FOLDER` (see lib-kernel-finish.sh); exit 1 and a message on stderr when a
#   copy is short or a write fails (the temporary .staging-NAME-PID folder is removed).

set -u
src=$1 dir=$2 name=$3 koff=$4 klen=$5 roff=$6 rlen=$7 cmdline=$8
umask 022
mkdir -p -- "$dir" || exit 1
tmp=$dir/.staging-$name-$$
mkdir -- "$tmp" || exit 1
trap 'rm -rf -- "$tmp"' EXIT
cat > "$tmp/isoadmin.json" || exit 1
flags=skip_bytes,count_bytes,fullblock
dd if="$src" of="$tmp/kernel" bs=1M iflag=$flags skip="$koff" count="$klen" status=none || exit 1
[ "$(stat -c %s -- "$tmp/kernel")" = "$klen" ] || { echo "short kernel copy" >&2; exit 1; }
ks=$(sha256 < "$tmp/kernel" | cut -c1-64)
printf '%s  kernel\n' "$ks" > "$tmp/SHA256SUMS"
if [ "$rlen" -gt 0 ]; then
  dd if="$src" of="$tmp/ramdisk" bs=1M iflag=$flags skip="$roff" count="$rlen" status=none || exit 1
  [ "$(stat -c %s -- "$tmp/ramdisk")" = "$rlen" ] || { echo "short ramdisk copy" >&2; exit 1; }
  printf '%s  ramdisk\n' "$(sha256 < "$tmp/ramdisk" | cut -c1-64)" >> "$tmp/SHA256SUMS"
fi
finish "$tmp" "$dir" "$name" "$ks" "$cmdline"
