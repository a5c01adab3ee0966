# lib-ledger-dump.sh: the shell function ledger_dump LEDGER, the read of the whole ledger that every refresh
# makes (the image host's listing runs it after its own output; ledger-dump.sh runs it alone).
#
# Records modified within two days are printed whole; older ones only by name (a console reads those it has
# not seen yet once, with ledger-fetch.sh). Each record is one line whatever its file ends with (a record
# written by hand may lack its newline).
#
# Input: $1 the ledger folder.
# Output, one line each:
#   now EPOCH                         the ledger host's clock
#   absent | unreadable               the folder is missing or cannot be entered (nothing else follows)
#   head COUNT SHA256                 audit.head
#   file jobs/ID.json                 every record (and file rejections/NAME.json)
#   data jobs/ID.json FIRST-LINE      the records changed in the last two days
#   lease ID MTIME FIRST-LINE         every lease, its mtime by the ledger host's clock
#   lock KEY HOLDER-LINE | lock KEY - MTIME   every upload lock, with its holder (or none yet)

ledger_dump() {
  L=$1
  printf 'now %s\n' "$(date +%s)"
  [ -d "$L" ] || { echo absent; return 0; }
  cd -- "$L" || { echo unreadable; return 0; }
  [ -r audit.head ] && sed 's/^/head /' audit.head
  for d in jobs rejections; do
    [ -d "$d" ] || continue
    find "$d" -maxdepth 1 -type f -name '*.json' -exec printf 'file %s\n' {} +
    find "$d" -maxdepth 1 -type f -name '*.json' -mtime -2 -exec sh -c \
      'for f; do printf "data %s %s\n" "$f" "$(head -n 1 -- "$f")"; done' sh {} +
  done
  for f in leases/*; do
    [ -f "$f" ] || continue
    printf 'lease %s %s %s\n' "${f#leases/}" "$(date -r "$f" +%s)" "$(head -n 1 -- "$f")"
  done
  for d in locks/*; do
    [ -d "$d" ] || continue
    if [ -f "$d/holder" ]; then printf 'lock %s %s\n' "${d#locks/}" "$(head -n 1 -- "$d/holder")"
    else printf 'lock %s - %s\n' "${d#locks/}" "$(date -r "$d" +%s)"; fi
  done
  return 0
}
