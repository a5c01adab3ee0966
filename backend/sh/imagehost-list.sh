# imagehost-list.sh (isoadmin-list): the image host's inventory in one command: its clock, its groups, a
# listing of the uploads root, and (when the ledger lives on this host) the ledger's dump. Runs after
# lib-ledger-dump.sh (prepended by backend/imagehost.py).
#
# Inputs: $1 the uploads root; $2 the ledger folder, or nothing.
# Output: `EPOCH.FRACTION` (the host's clock), `group NAME:X:GID:MEMBERS` lines (getent group, else /etc/group),
#   a line `--`, then one record per entry of the root and of each folder in it (depth 1 and 2), NUL-terminated
#   fields `TYPE SIZE MTIME INODE LINKS DEPTH GID PATH` then the link target (empty unless a symlink); links are
#   never followed. On stderr, the ledger's dump (see lib-ledger-dump.sh). Exit status: find's.

date +%s.%N
{ getent group 2>/dev/null || cat /etc/group; } | sed 's/^/group /'
echo --
find "$1" -mindepth 1 -maxdepth 2 -printf '%y %s %T@ %i %n %d %G %P\0%l\0' || exit
[ -n "${2-}" ] || exit 0
ledger_dump "$2" >&2
