# imagehost-in-use-portable.sh (isoadmin-inuse): imagehost-in-use.sh for the hosts whose listing is the
# portable one (BusyBox find has no -lname): the first /proc/PID/fd whose open file has the upload's device and
# inode (stat -L of each, against lstat of the upload: the same file under any name).
#
# Input: $1 the upload's path.
# Output: that process's PID, or nothing. Exit 0.

want=$(stat -c '%d %i' -- "$1" 2>/dev/null) || exit 0
find /proc/[0-9]*/fd -maxdepth 1 -type l -exec stat -L -c '%d %i %n' -- {} + 2>/dev/null |
  sed -n "s#^$want /proc/\\([0-9]*\\)/fd/.*#\\1#p" | head -n 1
exit 0
