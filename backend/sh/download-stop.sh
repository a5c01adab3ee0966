# download-stop.sh (isoadmin-download-stop): finish a download whose console died: stop its process group if it
# still runs (found by its PID, or among /proc by its job id), remove its temporary files.
#
# Inputs: $1 the journaled PID (or ""), $2 the job id, $3 the part file, $4 the file the job was to become,
#   $5 the part file an older version used, $6 the cache folder.
# Output: `stopped PID` when a download was stopped; then `final` (the file is complete and nothing of the job
#   is left) or `removed`. Exit 2 on a bad job id.

pid=$1 job=$2 part=$3 final=$4 legacy=$5 cache=$6
case $pid in ''|0|*[!0-9]*) pid= ;; esac
case $job in ''|*[!0-9a-f]*) echo "bad job id" >&2; exit 2 ;; esac
is_download() {  # $1 runs this job's download: isoadmin-download with the job's id as an argument
  [ -r "/proc/$1/cmdline" ] || return 1
  args=$(tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  printf '%s\n' "$args" | grep -qx isoadmin-download && printf '%s\n' "$args" | grep -qx -- "$job"
}
if [ -z "$pid" ]; then  # not journaled (its console died first): look for it
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    # shellcheck disable=SC2015 # the fallback is meant to run when either test fails
    [ "$p" != "$$" ] && is_download "$p" || continue
    st=$(cat "$d/stat" 2>/dev/null) || continue
    # shellcheck disable=SC2086 # split on purpose: the fields after the command name are numbers and a state letter
    set -- ${st##*) }  # state, parent, process group, ...
    [ "${3:-}" = "$p" ] && { pid=$p; break; }
  done
fi
if [ -n "$pid" ] && is_download "$pid"; then
  kill -TERM "-$pid" 2>/dev/null
  i=0; while kill -0 "-$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  kill -KILL "-$pid" 2>/dev/null
  echo "stopped $pid"
fi
rm -f -- "$cache/tmp/$job" "$cache/tmp/$job.err" "$cache/tmp/$job.cred"
if [ -e "$part" ]; then rm -f -- "$part"; echo removed
elif [ -f "$legacy" ] && [ ! -L "$legacy" ]; then rm -f -- "$legacy"; echo removed
elif [ -e "$final" ]; then echo final
else echo removed; fi
