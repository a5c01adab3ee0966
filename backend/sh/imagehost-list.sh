# imagehost-list.sh (isoadmin-list): the image host's inventory in one command: its clock, its groups, a
# listing of the uploads root, and (when the ledger lives on this host) the ledger's dump. Runs after
# lib-ledger-dump.sh (prepended by backend/imagehost.py).
#
# Links are never followed. Two forms of the listing, the host choosing (parsed by backend/imagehost.py,
# parse_listing):
#
# * where find has -printf and dd has iflag=nofollow (GNU findutils and coreutils): `find -printf`, one process:
#   one record per entry of the root and of each folder in it (depth 1 and 2), NUL-terminated fields
#   `TYPE SIZE MTIME INODE LINKS DEPTH GID PATH` then the link target (empty unless a symlink). Exit status:
#   find's.
# * else (BusyBox), after a line `listing portable` (the console then sends this host the other scripts'
#   portable forms, *-portable.sh): find and stat(1) only, two traversals from the root (paths start with ./),
#   stat's and find's messages discarded (they would name owners' files; an entry that vanishes meanwhile is
#   left out):
#     1. the entries whose path holds no newline, one line each: `MODE-HEX SIZE MTIME-S DATE TIME.NS ZONE INODE
#        LINKS GID PATH` (stat -c '%f %s %Y %y %i %h %g %n'); then one NUL;
#     2. NUL-terminated records: `S` and the same fields without the path, a newline, the path, for each entry
#        whose path holds a newline (never in pass 1, so no name can forge a line there); `L` and the path, then
#        the target and a newline (readlink; nothing if it vanished), for each symlink.
#   Exit status: 0 once the root could be entered.
#
# Inputs: $1 the uploads root; $2 the ledger folder, or nothing.
# Output: `EPOCH.FRACTION` (the host's clock; whole seconds where `date` has no %N), `group NAME:X:GID:MEMBERS`
#   lines (getent group, else /etc/group), `listing portable` for the second form, a line `--`, then the
#   listing. On stderr, the ledger's dump (see lib-ledger-dump.sh).

nl='
'
listing_portable() {  # $1 the uploads root
  cd -- "$1" || return
  LC_ALL=C find . -mindepth 1 -maxdepth 2 ! -path "*$nl*" -exec stat -c '%f %s %Y %y %i %h %g %n' -- {} + 2>/dev/null
  printf '\0'
  # -links +0 is always true: an L record always has its two parts, even when readlink fails
  LC_ALL=C find . -mindepth 1 -maxdepth 2 \
    \( -path "*$nl*" -exec stat -c 'S %f %s %Y %y %i %h %g' -- {} \; -exec printf '%s\0' {} \; -o -links +0 \) \
    -type l -exec printf 'L%s\0' {} \; \( -exec readlink -- {} \; -o -links +0 \) -exec printf '\0' \; 2>/dev/null
  return 0
}

now=$(date +%s.%N)
case $now in *[!0-9.]*|'') now=$(date +%s) ;; esac
printf '%s\n' "$now"
{ getent group 2>/dev/null || cat /etc/group; } | sed 's/^/group /'
gnu=
find / -maxdepth 0 -printf '' 2>/dev/null &&
  dd if=/dev/null of=/dev/null iflag=nofollow,nonblock count=0 status=none 2>/dev/null && gnu=1
if [ -n "$gnu" ]; then
  echo --
  find "$1" -mindepth 1 -maxdepth 2 -printf '%y %s %T@ %i %n %d %G %P\0%l\0' || exit
else
  echo 'listing portable'
  echo --
  listing_portable "$1" || exit
fi
[ -n "${2-}" ] || exit 0
ledger_dump "$2" >&2
