# lib-open-upload.sh: how the scripts that read an owner's file open it without following a link; prepended to
# imagehost-headers.sh, imagehost-copy.sh and kernels-send.sh.
#
# Defines nofollow (`nofollow,nonblock` where this host's dd has iflag=nofollow: GNU coreutils; empty
# elsewhere: BusyBox) and open_upload PATH [INODE], which sets `upload` to the file dd should read:
#
# * with nofollow, PATH itself: every dd opens it with O_NOFOLLOW (a link fails the open) and O_NONBLOCK (a fifo
#   does not block it); the callers pass iflag=$nofollow. Nothing is checked here.
# * without, PATH is opened once, on fd 7, only after lstat says it is a regular file (no link, fifo, device),
#   and kept only when the file opened is that very file: the device and inode of the open file (stat -L of
#   /proc/self/fd/7) equal those lstat gave for PATH just before (and INODE, when given: the one the caller
#   saw). A link, fifo or device swapped in at that instant is opened (sh cannot open without following), but
#   never read: fd 7 is closed and open_upload fails. `upload` is then /proc/self/fd/7, which every later dd
#   reopens (the very same file, whatever the path names by then).
#
# Input: none (a function library). Output: none; open_upload returns 1, with nothing open and no message
# (messages would name the owner's file), when PATH is not, or is no longer, the regular file it named.

nofollow=
if dd if=/dev/null of=/dev/null iflag=nofollow,nonblock count=0 status=none 2>/dev/null; then
  nofollow=nofollow,nonblock
fi

open_upload() {  # $1 the path; $2 the inode it must have, or nothing
  if [ -n "$nofollow" ]; then upload=$1; return 0; fi
  exec 7<&-
  named=$(stat -c '%f %d %i' -- "$1" 2>/dev/null) || return 1
  case $named in 8???\ *) ;; *) return 1 ;; esac  # st_mode 0x8xxx: a regular file
  [ -z "${2-}" ] || [ "${named##* }" = "$2" ] || return 1
  { command exec 7< "$1"; } 2>/dev/null || return 1
  if [ "$(stat -L -c '%f %d %i' /proc/self/fd/7 2>/dev/null)" != "$named" ]; then
    exec 7<&-
    return 1
  fi
  # shellcheck disable=SC2034 # open_upload's result, read by the script it is prepended to
  upload=/proc/self/fd/7
}
