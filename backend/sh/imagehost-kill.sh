# imagehost-kill.sh (isoadmin-kill): stop a copy (imagehost-copy.sh) by its PID, which is its process group,
# and wait (5 s at most) until the whole group is gone; a PID that now belongs to another program is left
# alone.
#
# Input: $1 the PID.
# Output: a message on stderr when the PID is not an isoadmin copy. Exit 0.

pid=$1
[ -r "/proc/$pid/cmdline" ] || exit 0
case "$(tr '\0' ' ' < "/proc/$pid/cmdline")" in
  *isoadmin-copy*)
    # "kill -TERM -- -PID" is refused by dash ("Illegal number"); "kill -TERM -PID" works in dash, BusyBox, bash
    kill -TERM "-$pid"
    # wait (5 s at most) until the whole group is gone: no writer starts after the caller removes the volume
    i=0; while kill -0 "-$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done ;;
  *) echo "process $pid is not an isoadmin copy; left alone" >&2 ;;
esac
