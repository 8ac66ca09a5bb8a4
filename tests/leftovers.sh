#!/usr/bin/env bash
# Shared memory the suite leaves behind. Every test removes what it makes, so a segment that is
# still there when the suite ends, and that no live process holds, is a leak: a name in /dev/shm
# of the suite's (`/sbtest-…` from the TypeScript tests, `/sb-…` from the Rust ones) or a removal's
# private name (`.shared-buffer-removing-…`) that this user owns, or a System V segment of this
# user that nothing has attached and whose creator has exited.
#
#   tests/leftovers.sh list          prints what exists now, one `name:<file>` or `shmid:<id>` a line
#   tests/leftovers.sh check <file>  fails, listing them, on leaks that <file> (a `list`) lacks
#
# Only what appeared since the `list` counts, so a leak of an earlier run does not fail this one
# (remove it with `rm /dev/shm/<name>` or `ipcrm -m <shmid>`), and a segment another run of the
# suite still holds (mapped, or open, by a live process) is not one.
set -euo pipefail

list() {
  # This user's only (links included): another user's processes, which might hold theirs, cannot
  # be looked into.
  if [[ -d /dev/shm ]]; then
    find /dev/shm -mindepth 1 -maxdepth 1 -user "$(id -u)" \( -name 'sbtest-*' -o -name 'sb-*' \
      -o -name '.shared-buffer-removing-*' \) -printf 'name:%f\n'
  fi
  if [[ -r /proc/sysvipc/shm ]]; then
    # key shmid perms size cpid lpid nattch uid ...: this user's, attached by nobody.
    awk -v uid="$(id -u)" 'NR > 1 && $7 == 0 && $8 == uid { print "shmid:" $2 " " $5 }' \
      /proc/sysvipc/shm | while read -r id cpid; do
      kill -0 "$cpid" 2>/dev/null || echo "$id"
    done
  fi
  return 0
}

# Whether a live process maps or holds open /dev/shm/$1.
held() {
  local path="/dev/shm/$1" p
  for p in /proc/[0-9]*; do
    grep -qF " $path" "$p/maps" 2>/dev/null && return 0
    [[ -n $(find "$p/fd" -lname "$path" -print -quit 2>/dev/null) ]] && return 0
  done
  return 1
}

case "${1:-}" in
  list) list ;;
  check)
    before="${2:?usage: leftovers.sh check <file of a list>}"
    leaks=()
    while read -r entry; do
      grep -qxF "$entry" "$before" && continue
      if [[ $entry == name:* ]] && held "${entry#name:}"; then continue; fi
      leaks+=("$entry")
    done < <(list)
    if ((${#leaks[@]})); then
      echo "The suite left shared memory behind (a test did not remove what it made):" >&2
      printf '  %s\n' "${leaks[@]}" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: leftovers.sh list | check <file>" >&2
    exit 2
    ;;
esac
