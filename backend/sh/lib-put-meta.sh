# lib-put-meta.sh: put_meta FILE TEXT, the `files` storage's atomic metadata write; prepended to the scripts
# that write a volume's sidecar.
#
# Metadata comes as an argument (never on stdin, which a dying console would cut short) and is written to a
# temp file with fsync before anything is renamed: no kill point leaves a volume with empty metadata. (Between
# the volume's creation and its metadata's rename a kill leaves a volume without metadata, which `check`
# reports and `repair` removes.)
#
# Inputs: none (a function library). Output: none.

put_meta() { printf '%s\n' "$2" | dd of="$1.tmp.$$" conv=fsync status=none && mv -f -- "$1.tmp.$$" "$1"; }
