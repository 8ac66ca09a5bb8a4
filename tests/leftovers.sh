#!/usr/bin/env bash
# Shared memory the suite leaves behind (Linux; elsewhere it finds nothing to look at). Every test
# removes what it makes, so a segment that is still there when the suite ends, and that no live
# process holds, is a leak: a name in /dev/shm of the suite's that this user owns (`/sbtest-…`
# from the TypeScript tests, `/sb-…` from the Rust ones, a removal's private
# `.shared-buffer-removing-…`), or a System V segment of this user that nothing attaches and
# whose creator has exited.
#
#   tests/leftovers.sh list          prints what exists now, one `name:<file>` or `shmid:<id>` a line
#   tests/leftovers.sh check <file>  fails, listing them, on leaks that <file> (a `list`) lacks
#
# Only what appeared since the `list` counts, so a leak of an earlier run does not fail this one
# (remove it with `rm /dev/shm/<name>` or `ipcrm -m <shmid>`). A segment that another run of the
# suite still holds (mapped, open or attached by a live process) is not a leak, and one that it
# is about to remove gets a few seconds to go before it counts.
set -euo pipefail

# Every candidate, held or not: whether it is held is decided at check time.
list() {
  if [[ -d /dev/shm ]]; then
    # This user's only (links included): another user's processes, which might hold theirs,
    # cannot be looked into. Names that go while find reads the folder are no error.
    find /dev/shm -mindepth 1 -maxdepth 1 -ignore_readdir_race \
      \( -name 'sbtest-*' -o -name 'sb-*' -o -name '.shared-buffer-removing-*' \) \
      -user "$(id -u)" -printf 'name:%f\n'
  fi
  if [[ -r /proc/sysvipc/shm ]]; then
    # key shmid perms size cpid lpid nattch uid ...
    awk -v uid="$(id -u)" 'NR > 1 && $8 == uid { print "shmid:" $2 }' /proc/sysvipc/shm
  fi
}

# Whether the name /dev/shm/$1 is gone, or a live process maps it or holds it open.
name_held() {
  local path="/dev/shm/$1" p
  [[ -e $path || -L $path ]] || return 0
  for p in /proc/[0-9]*; do
    # The path is the sixth field of a mapping's line (a seventh, "(deleted)", is not this file).
    awk -v path="$path" '$6 == path && NF == 6 { found = 1; exit } END { exit !found }' \
      "$p/maps" 2>/dev/null && return 0
    [[ -n $(find "$p/fd" -lname "$path" -print -quit 2>/dev/null) ]] && return 0
  done
  return 1
}

# Whether System V segment $1 is gone, attached, or made by a process still alive.
shmid_held() {
  local cpid
  cpid=$(awk -v id="$1" 'NR > 1 && $2 == id { print ($7 > 0 ? 0 : $5) }' /proc/sysvipc/shm)
  [[ -z $cpid || $cpid == 0 ]] && return 0
  kill -0 "$cpid" 2>/dev/null
}

# The entries of a `list` now that were not in file $1 and that nothing holds.
unheld_new() {
  local entry
  while read -r entry; do
    grep -qxF "$entry" "$1" && continue
    case $entry in
      name:*) name_held "${entry#name:}" && continue ;;
      shmid:*) shmid_held "${entry#shmid:}" && continue ;;
    esac
    echo "$entry"
  done < <(list)
}

case "${1:-}" in
  list) list ;;
  check)
    before="${2:?usage: leftovers.sh check <file of a list>}"
    [[ -r $before ]] || { echo "leftovers.sh: no list at $before (run \`list\` first)" >&2; exit 2; }
    leaks=$(unheld_new "$before")
    # Another run's segment between its last use and its removal goes within seconds; a leak
    # stays.
    for _ in 1 2 3 4 5; do
      [[ -z $leaks ]] && break
      sleep 1
      leaks=$(unheld_new "$before")
    done
    if [[ -n $leaks ]]; then
      echo "The suite left shared memory behind (a test did not remove what it made):" >&2
      sed 's/^/  /' <<<"$leaks" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: leftovers.sh list | check <file>" >&2
    exit 2
    ;;
esac
