# hosttools-probe.sh (isoadmin-tools): what a host has, asked once per host and console.
#
# Input: none.
# Output, one line each: `sha openssl|sha256sum|none`; `dd gnu|busybox|other`; `curl PROTOCOLS` when it has
#   curl; `wget gnu|busybox|busybox-applet` when it has a wget. Exit 0.

export LC_ALL=C
if command -v openssl >/dev/null 2>&1 && echo | openssl dgst -sha256 -r >/dev/null 2>&1; then echo sha openssl
elif command -v sha256sum >/dev/null 2>&1; then echo sha sha256sum
else echo sha none; fi
v=$(dd --version 2>/dev/null | head -n 1)
case $v in
  *coreutils*) echo dd gnu ;;
  *) if dd --help 2>&1 | grep -qi busybox || { [ -L "$(command -v dd)" ] && readlink "$(command -v dd)" | grep -q busybox; }
     then echo dd busybox; else echo dd other; fi ;;
esac
if command -v curl >/dev/null 2>&1; then
  printf 'curl %s\n' "$(curl --version 2>/dev/null | sed -n 's/^Protocols: //p' | head -n 1)"
fi
if command -v wget >/dev/null 2>&1; then
  if wget --version 2>/dev/null | grep -q 'GNU Wget'; then echo wget gnu; else echo wget busybox; fi
elif command -v busybox >/dev/null 2>&1 && busybox wget --help >/dev/null 2>&1; then echo wget busybox-applet
fi
exit 0
