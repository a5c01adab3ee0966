# kernels-list.sh (isoadmin-kernel-sets): every kernel set staged on a dom0, and the temporary folders a staging
# left behind.
#
# Inputs: $1 the kernel folder (kernel_dir), $2 minutes after which a .staging-* folder is a leftover.
# Output, NUL-separated fields: `set` OWNER/NAME KERNEL-SIZE RAMDISK-SIZE SHA256SUMS CMDLINE ISOADMIN.JSON for
#   each set; `leftover` ./OWNER/.staging-NAME for each leftover. Exit 0.

root=$1
[ -d "$root" ] || exit 0
cd -- "$root" || exit 0
for d in */*/; do
  d=${d%/}
  case ${d##*/} in .*) continue ;; esac
  # shellcheck disable=SC2015 # the fallback is meant to run when either test fails
  [ -f "$d/isoadmin.json" ] && [ -f "$d/SHA256SUMS" ] && [ -f "$d/kernel" ] || continue
  printf 'set\0%s\0%s\0%s\0' "$d" "$(stat -c %s -- "$d/kernel")" "$(stat -c %s -- "$d/ramdisk" 2>/dev/null || echo 0)"
  cat -- "$d/SHA256SUMS"; printf '\0'; cat -- "$d/cmdline" 2>/dev/null; printf '\0'
  cat -- "$d/isoadmin.json"; printf '\0'
done
find . -mindepth 2 -maxdepth 2 -type d -name '.staging-*' -mmin +"$2" -exec printf 'leftover\0%s\0' {} + 2>/dev/null
exit 0
