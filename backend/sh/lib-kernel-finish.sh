# lib-kernel-finish.sh: the shell function finish, the end of a kernel staging shared by kernels-stage.sh and
# kernels-receive.sh (prepended to both).
#
# finish TMP DIR NAME KERNEL-SHA256 CMDLINE: writes CMDLINE (one line) beside the files in the temporary folder
# TMP, then renames TMP into place as DIR/NAME-SHA8 (the kernel's sha256's first 8 digits). A set already there
# with the same SHA256SUMS and command line is the same set (left as it is); a different one under that name
# gets the next free NAME-SHA8.N. It clears the caller's EXIT trap (which removes TMP) once TMP is renamed, and
# exits. (It sets the globals tmp, dir, name, ks and cmdline to its arguments: sh has no local variables.)
#
# Input: none (a function library). Output, when called: `staged FOLDER` or `exists FOLDER`; exit 1 when a
# write or the rename fails.

finish() {
  tmp=$1 dir=$2 name=$3 ks=$4 cmdline=$5
  printf '%s\n' "$cmdline" > "$tmp/cmdline" || exit 1
  sync
  base=$dir/$name-$(printf '%s' "$ks" | cut -c1-8)
  final=$base n=2
  while [ -e "$final" ]; do
    if cmp -s -- "$final/SHA256SUMS" "$tmp/SHA256SUMS" && cmp -s -- "$final/cmdline" "$tmp/cmdline"; then
      echo "exists $final"; exit 0
    fi
    final=$base.$n n=$((n + 1))
  done
  mv -T -- "$tmp" "$final" || exit 1
  trap - EXIT
  echo "staged $final"
}
