# lib-sha256.sh: the shell function sha256, prepended to the scripts that hash.
#
# sha256 hashes its standard input with `openssl dgst -sha256 -r` where the host has openssl, else with
# `sha256sum` (coreutils or BusyBox): both print the same line, `HEX *-` or `HEX  -` (the digest, a blank, a
# name). Callers keep the first 64 characters.
#
# Inputs: none (a function library). Output: none until sha256 is called.

sha256() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }
