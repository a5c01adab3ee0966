# hv-lab-owner.sh (isoadmin-lab-owner): a lab VM's owner, the first line of its `owner` file (the lab's
# stand-in for libvirt <metadata>).
#
# Input: $1 the VM's folder. Output: the owner, or nothing; exit 3 no such domain.

[ -d "$1" ] || exit 3; head -n 1 -- "$1/owner" 2>/dev/null; exit 0
