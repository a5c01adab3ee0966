# hv-lab-links.sh (isoadmin-lab-links): the lab hypervisor's symlinks and where they lead: the by-id links and
# xvdX devices of the image host, the VMs' `cdrom`, `kernel` and `initrd` links. Links are read, never
# followed.
#
# Inputs: $1 a folder; $2 `1` for the links in it, `2` for the links in each folder in it (not through a link);
#   $3... name patterns (globs: virtio-*, xvd*, cdrom).
# Output: `FOLDER NAME TARGET` per symlink whose name matches a pattern, FOLDER the name of the folder that holds
#   it (the VM's, at depth 2). Exit 0.

links_in() {  # $1 a folder; then the patterns
  f=$1
  shift
  for l in "$f"/*; do
    [ -L "$l" ] || continue
    name=${l##*/}
    for pat; do
      # shellcheck disable=SC2254 # the patterns are globs on purpose
      case $name in $pat)
        printf '%s %s %s\n' "${f##*/}" "$name" "$(readlink -- "$l")"
        break ;;
      esac
    done
  done
}
dir=$1 depth=$2
shift 2
if [ "$depth" = 1 ]; then
  links_in "$dir" "$@"
else
  for d in "$dir"/*/; do
    d=${d%/}
    [ -L "$d" ] || links_in "$d" "$@"
  done
fi
exit 0
