# kernels-remove.sh (isoadmin-remove-kernel): remove a kernel set (or a leftover .staging-* folder): renamed
# aside first, so a set is never listed half-removed.
#
# Inputs: $1 the kernel folder (kernel_dir), $2 OWNER/NAME.
# Output: none; exit 3 no such set, 4 not a kernel set (a message on stderr).

root=$1 rel=$2
d=$root/$rel
# shellcheck disable=SC2015 # the fallback is meant to run when either test fails
[ -d "$d" ] && [ ! -L "$d" ] || { echo "no kernel set $rel" >&2; exit 3; }
case $rel in */.staging-*) ;; *) [ -f "$d/isoadmin.json" ] || { echo "$rel is not a kernel set" >&2; exit 4; } ;; esac
gone=${d%/*}/.deleting-${d##*/}-$$
mv -T -- "$d" "$gone" && rm -rf -- "$gone"
