# hv-lab-detach.sh (isoadmin-detach): the lab hypervisor's detach: remove the by-id link, and check it is gone.
#
# Input: $1 the link. Output: none; exit non-zero while it is still there.

link=$1
rm -f -- "$link"
[ ! -e "$link" ] && [ ! -L "$link" ]
