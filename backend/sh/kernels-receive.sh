# kernels-receive.sh (isoadmin-stage-kernel): stage an uploaded kernel and ramdisk on a dom0, their bytes
# streamed from the image host through the console. Runs after lib-sha256.sh and lib-kernel-finish.sh
# (prepended by backend/kernels.py).
#
# stdin: the kernel's then the ramdisk's bytes, then one line with the sha256 of each as the console read them
# from the upload (sent only when the image host saw the uploads unchanged): the set is renamed into place only
# when those equal the sha256 of what landed. EOF before that line (the console stopped, or the upload changed)
# leaves nothing: the temporary folder is removed on exit.
#
# Inputs: $1 the kernel folder (kernel_dir/OWNER), $2 the set's name, $3 $4 the kernel's and the ramdisk's
#   length, $5 the command line, $6 isoadmin.json.
# Output: `staged FOLDER` or `exists FOLDER`; exit 1 and a message on stderr otherwise.

set -u
dir=$1 name=$2 klen=$3 rlen=$4 cmdline=$5 meta=$6
umask 022
mkdir -p -- "$dir" || exit 1
tmp=$dir/.staging-$name-$$
mkdir -- "$tmp" || exit 1
trap 'rm -rf -- "$tmp"' EXIT
printf '%s\n' "$meta" > "$tmp/isoadmin.json" || exit 1
# exactly klen then rlen bytes of stdin, the confirming line left to read: dd with count_bytes asks for no more
# than it still needs (BusyBox head -c reads its input ahead through stdio and would swallow the ramdisk's bytes)
dd of="$tmp/kernel" bs=1M count="$klen" iflag=count_bytes,fullblock status=none || exit 1
dd of="$tmp/ramdisk" bs=1M count="$rlen" iflag=count_bytes,fullblock status=none || exit 1
# shellcheck disable=SC2015 # the fallback is meant to run when either test fails
[ "$(stat -c %s -- "$tmp/kernel")" = "$klen" ] && [ "$(stat -c %s -- "$tmp/ramdisk")" = "$rlen" ] || {
  echo "the transfer was cut short" >&2; exit 1; }
ks=$(sha256 < "$tmp/kernel" | cut -c1-64)
rs=$(sha256 < "$tmp/ramdisk" | cut -c1-64)
read -r want || { echo "the transfer was not confirmed" >&2; exit 1; }
[ "$want" = "$ks $rs" ] || { echo "landed kernel $ks ramdisk $rs differ from the upload's" >&2; exit 1; }
printf '%s  kernel\n%s  ramdisk\n' "$ks" "$rs" > "$tmp/SHA256SUMS"
finish "$tmp" "$dir" "$name" "$ks" "$cmdline"
