# imagehost-in-use.sh (isoadmin-inuse): a process that holds an upload open (an SFTP upload still writing it):
# the first /proc/PID/fd link whose target matches (GNU find -lname). Hosts whose listing is the portable one get
# imagehost-in-use-portable.sh instead.
#
# Input: $1 the upload's path as a find(1) -lname pattern (its *?[\ escaped by backend/imagehost.py).
# Output: that process's PID, or nothing. Exit 0.

find /proc/[0-9]*/fd -maxdepth 1 -type l -lname "$1" -print -quit 2>/dev/null | cut -d/ -f3
exit 0
