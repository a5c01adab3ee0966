# download-head.sh (isoadmin-head): read a server's headers without following a redirect.
#
# GNU Wget and BusyBox print the headers indented on stderr; BusyBox wget cannot be kept from following a
# redirect (its first response is the one read), nor given a timeout safely (`-T` crashes BusyBox 1.35 on a
# stalled server), so `timeout` bounds it where the host has one.
#
# Inputs: $1 the URL (no credentials), $2 the timeout in seconds, $3 the downloader (curl, gnu-wget,
#   busybox-wget, busybox), $4 `1` when stdin carries the tool's credentials file (kept in a 0600 temporary
#   file while the tool runs).
# Output: the response headers (every response, in order); the tool's last message on stderr; its exit status.

export LC_ALL=C
url=$1 t=$2 tool=$3 secret=${4:-}
cred=/dev/null
if [ -n "$secret" ]; then
  cred=$(umask 077 && mktemp) || { echo "cannot keep the credentials" >&2; exit 2; }
  trap 'rm -f -- "$cred"' EXIT
  cat > "$cred" || exit 2
fi
to=; command -v timeout >/dev/null 2>&1 && to="timeout $t"
case $tool in
  curl) curl -sS -I -g -K "$cred" --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$t" -m "$t" \
          --url "$url"; exit ;;
  gnu-wget) set --; [ -z "$secret" ] || set -- --config="$cred"  # an empty --config file is an error to wget
    out=$($to wget "$@" -S --spider --max-redirect=0 -t 1 -T "$t" -- "$url" 2>&1 >/dev/null) ;;
  busybox-wget) out=$($to wget -S --spider -- "$url" 2>&1 >/dev/null) ;;
  busybox) out=$($to busybox wget -S --spider -- "$url" 2>&1 >/dev/null) ;;
  *) echo "no downloader" >&2; exit 2 ;;
esac
rc=$?
printf '%s\n' "$out" | sed -n 's/^  //p'
printf '%s\n' "$out" | grep -v '^  ' | tail -n 1 >&2
exit $rc
