# download.sh (isoadmin-download): download a URL into an owner's folder through the image host's cache, under
# setsid (its PID is its process group).
#
# Nothing is written through a path an owner controls: the bytes go to the cache (root's, 0700) and to
# ROOT/.isoadmin/JOB.part (root's, 0700), the file is given to the owner's folder's uid and gid there, and one
# `mv -n -T` (rename, which replaces a link rather than following it, and never a directory) moves it into the
# owner's folder, refused when anything is there already. Whatever the downloader, the script itself cuts a
# download off when its file has not grown for the stall time or has grown over the cap, checks the length
# against the announced one and refuses an empty body; curl and GNU Wget are also told not to follow redirects,
# and BusyBox wget (which always follows them) has its headers shown (`-S`): more than one response fails the
# download. The expected sha256 is checked in both modes before anything reaches the owner.
#
# Inputs: $1 mode (`fetch`: download into the cache first; `cache`: copy a cached object), $2 the URL (no
#   credentials), $3 the uploads root, $4 the owner, $5 the file name, $6 the cache folder, $7 the cache key,
#   $8 the expected sha256 ("" for none), $9 the announced size ("" for unknown), $10 the cap in bytes, $11 the
#   stall seconds, $12 `openssl` or `sha256sum`, $13 the cached object (mode cache), $14 the downloader (curl,
#   gnu-wget, busybox-wget, busybox), $15 the job id, $16 `1` when stdin carries the downloader's credentials
#   file, $17 the URL as stored (credentials as ***).
# Output: `pid PID`; `fetched N` or `cached SHA256` + `size N`; then `sha256 HEX` when the file is in place, or
#   `error WHY` (exit 1). Progress on stderr: `N bytes`.

export LC_ALL=C
umask 077
mode=$1 url=$2 root=$3 owner=$4 name=$5 cache=$6 key=$7 expect=$8 announced=$9
cap=${10} stall=${11} sha=${12} object=${13} tool=${14:-curl} job=${15} secret=${16:-} shown=${17:-$2}
sha256() { if [ "$sha" = openssl ]; then openssl dgst -sha256 -r; else sha256sum; fi; }
printf 'pid %s\n' "$$"
dir=$root/$owner final=$root/$owner/$name work=$root/.isoadmin
part=$work/$job.part tmp='' cred=/dev/null
fail() {
  printf 'error %s\n' "$1"
  rm -f -- "$part"
  [ -z "$tmp" ] || rm -f -- "$tmp" "$tmp.err"
  [ "$cred" = /dev/null ] || rm -f -- "$cred"
  exit 1
}
private() {  # $1 is a folder of this user's that no one else may enter, and no link
  [ -d "$1" ] && [ ! -L "$1" ] && [ "$(stat -c '%u %a' -- "$1")" = "$(id -u) 700" ]
}
case $job in ''|*[!0-9a-f]*) printf 'error bad job id\n'; exit 1 ;; esac
# shellcheck disable=SC2015 # the fallback is meant to run when either test fails
[ -d "$dir" ] && [ ! -L "$dir" ] || { printf 'error no folder %s\n' "$dir"; exit 1; }
if [ -e "$final" ] || [ -L "$final" ]; then printf 'error %s exists already\n' "$name"; exit 1; fi
ids=$(stat -c '%u:%g' -- "$dir") || { printf 'error cannot read the owner of %s\n' "$dir"; exit 1; }
[ -e "$work" ] || [ -L "$work" ] || mkdir -m 700 -- "$work" 2>/dev/null
private "$work" || { printf 'error %s is not a folder only %s may enter (mode 0700)\n' "$work" "$(id -un)"; exit 1; }
[ "$(stat -c %d -- "$work")" = "$(stat -c %d -- "$dir")" ] || {
  printf 'error %s is on another file system than %s\n' "$dir" "$work"; exit 1; }
if [ ! -e "$cache" ] && [ ! -L "$cache" ]; then
  (umask 022 && mkdir -p -- "${cache%/*}") && mkdir -m 700 -- "$cache" 2>/dev/null
fi
private "$cache" || {
  printf 'error the cache %s is not a folder only %s may enter (mode 0700); isoadmin never changes a folder it did not create\n' \
    "$cache" "$(id -un)"; exit 1; }
mkdir -p -- "$cache/tmp" "$cache/objects" "$cache/keys" || { echo "error cannot create the cache"; exit 1; }
: > "$part" || fail "cannot write $part"
if [ "$mode" = fetch ]; then
  tmp=$cache/tmp/$job
  : > "$tmp"
  if [ -n "$secret" ]; then
    cred=$cache/tmp/$job.cred
    cat > "$cred" || fail "cannot keep the credentials"
  fi
  case $tool in
    curl) curl -sS -g -K "$cred" --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$stall" \
            --speed-limit 1 --speed-time "$stall" -f -o "$tmp" --url "$url" 2>"$tmp.err" & ;;
    gnu-wget) set --; [ -z "$secret" ] || set -- --config="$cred"  # an empty --config file is an error to wget
      wget "$@" -q -t 1 --max-redirect=0 --connect-timeout="$stall" --read-timeout=$((stall + 10)) \
        -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    busybox-wget) wget -q -S -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    busybox) busybox wget -q -S -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    *) fail "no downloader (curl, wget or busybox wget)" ;;
  esac
  cpid=$!
  last=-1 still=0
  while kill -0 "$cpid" 2>/dev/null; do
    n=$(stat -c %s -- "$tmp" 2>/dev/null || echo 0)
    printf '%s bytes\n' "$n" >&2
    if [ "$n" -gt "$cap" ]; then kill "$cpid"; wait "$cpid"; fail "the server sent more than $cap bytes"; fi
    if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0 last=$n; fi
    if [ "$still" -ge $((stall * 2)) ]; then kill "$cpid"; wait "$cpid"; fail "the server stalled (nothing for $stall s)"; fi
    sleep 0.5
  done
  wait "$cpid"; rc=$?
  [ "$cred" = /dev/null ] || { rm -f -- "$cred"; cred=/dev/null; }
  err=$(grep -v '^  ' "$tmp.err" | head -c 300)
  answers=$(grep -c '^  HTTP/' "$tmp.err")
  rm -f "$tmp.err"
  n=$(stat -c %s -- "$tmp" 2>/dev/null || echo 0)
  [ "$answers" -le 1 ] || fail "the server redirected the download (BusyBox wget followed it; nothing kept)"
  if [ "$rc" != 0 ] && [ -n "$announced" ] && [ "$n" -lt "$announced" ] && [ "$n" -gt 0 ]; then
    fail "the server sent less than it announced ($n of $announced bytes)"
  fi
  case $tool.$rc in
    *.0) ;;
    curl.28) fail "the server stalled (nothing for $stall s)" ;;
    curl.18) fail "the server sent less than it announced ($err)" ;;
    *) fail "$tool exit $rc: $err" ;;
  esac
  n=$(stat -c %s -- "$tmp")
  [ "$n" -gt 0 ] || fail "the server sent no bytes"
  [ "$n" -le "$cap" ] || fail "the server sent more than $cap bytes"
  if [ -n "$announced" ] && [ "$n" != "$announced" ]; then
    fail "the server announced $announced bytes and sent $n"
  fi
  digest=$(sha256 < "$tmp"); digest=${digest%% *}
  if [ -n "$expect" ] && [ "$digest" != "$expect" ]; then fail "sha256 mismatch: got $digest"; fi
  mv -f -- "$tmp" "$cache/objects/$digest" || fail "cannot store in the cache"
  tmp=
  printf 'url %s\nsize %s\ncreated %s\n' "$shown" "$n" "$(date +%s)" > "$cache/objects/$digest.meta"
  printf '%s\n' "$digest" > "$cache/keys/$key"
  object=$digest
  echo "fetched $n"
else
  case $object in ''|*[!0-9a-f]*) fail "bad cache object" ;; esac
  [ -f "$cache/objects/$object" ] || fail "the cache lost $object"
  if [ -n "$expect" ] && [ "$object" != "$expect" ]; then fail "sha256 mismatch: got $object"; fi
  echo >> "$cache/objects/$object.hits"
  echo "cached $object"
  printf 'size %s\n' "$(stat -c %s -- "$cache/objects/$object")"
fi
printf '%s\n' "$owner" >> "$cache/objects/$object.owners"
dd if="$cache/objects/$object" of="$part" bs=4M conv=fsync status=none || fail "cannot write $part"
# shellcheck disable=SC2015 # fail when either the chown or the chmod fails
chown -- "$ids" "$part" && chmod 644 "$part" || fail "cannot give $part to the owner of $dir"
[ -z "$key" ] || printf '%s\n' "$object" > "$cache/keys/$key"
mv -n -T -- "$part" "$final" 2>/dev/null
if [ -e "$part" ]; then
  if [ -e "$final" ] || [ -L "$final" ]; then fail "$name exists already"; fi
  fail "cannot move the file into $dir"
fi
printf 'sha256 %s\n' "$object"
