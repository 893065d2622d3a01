# shellcheck shell=sh
# rke2-manager's etcd snapshot steps on an RKE2 server, run by the playbooks as
#
#   sh -c "<this script>" rke2m-snapshot save NAME TIMEOUT
#   sh -c "<this script>" rke2m-snapshot ls TIMEOUT
#   sh -c "<this script>" rke2m-snapshot delete TIMEOUT FULL-NAME...
#
# inside a fenced raw step (its RKE2M_FENCE tag is inherited). Every command prints, last, the
# node's snapshot table exactly as `rke2 etcd-snapshot ls` prints it (Name Location Size
# Created) between the lines "--- snapshots" and "--- end", so the manager records what the
# node holds after the step. `save` prints "saved=<full snapshot name>" first: RKE2 names the
# file <NAME>-<node name>-<unix time>, and the one new name of that form after the save is ours.
# Failures say what failed on stderr (last line) and exit 1; nothing is skipped.
set -u

fail() {
    printf '%s\n' "$*" >&2
    exit 1
}

rke2=""
for bin in /usr/local/bin/rke2 /usr/bin/rke2 /opt/rke2/bin/rke2; do
    if [ -x "$bin" ]; then
        rke2=$bin
        break
    fi
done
[ -n "$rke2" ] || fail "rke2 is not installed on this node (looked in /usr/local/bin, /usr/bin, /opt/rke2/bin)"

# run LIMIT WHAT CMD...: CMD's stdout; on failure say what failed, with its last line of output.
run() {
    limit=$1 what=$2
    shift 2
    errors=$(mktemp) || fail "cannot make a temporary file"
    out=$(timeout "$limit" "$@" 2>"$errors")
    rc=$?
    if [ "$rc" -ne 0 ]; then
        last=$(grep -v '^[[:space:]]*$' "$errors" | tail -n 1 | cut -c1-300)
        [ -n "$last" ] || last=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-300)
        rm -f "$errors"
        if [ "$rc" -eq 124 ]; then
            fail "$what did not complete within ${limit}s"
        fi
        fail "$what failed (exit $rc)${last:+: $last}"
    fi
    rm -f "$errors"
    printf '%s\n' "$out"
}

# The snapshot names of a table (the first column, header left out).
names() {
    awk 'NF >= 4 && !($1 == "Name" && $2 == "Location") { print $1 }' | sort -u
}

show() {
    echo "--- snapshots"
    printf '%s\n' "$1"
    echo "--- end"
}

command=${1:-}
case "$command" in
save)
    [ $# -eq 3 ] || fail "usage: rke2m-snapshot save NAME TIMEOUT"
    name=$2 limit=$3
    # The manager validated the name; a node refuses anything else too (it becomes a file name).
    case "$name" in
    '' | -* | *[!a-z0-9-]*) fail "refusing snapshot name '$name': only a-z, 0-9 and '-', not first" ;;
    esac
    before=$(run "$limit" "rke2 etcd-snapshot ls" "$rke2" etcd-snapshot ls) || exit 1
    run "$limit" "rke2 etcd-snapshot save --name $name" "$rke2" etcd-snapshot save --name "$name" >/dev/null || exit 1
    after=$(run "$limit" "rke2 etcd-snapshot ls" "$rke2" etcd-snapshot ls) || exit 1
    new=$(printf '%s\n' "$after" | names | while read -r found; do
        case "$found" in
        "$name"-*) printf '%s\n' "$before" | names | grep -qxF -- "$found" || printf '%s\n' "$found" ;;
        esac
    done)
    count=$(printf '%s' "$new" | grep -c .)
    [ "$count" -eq 1 ] ||
        fail "rke2 etcd-snapshot save succeeded, but $count new snapshots named $name-<node>-<time> are listed (expected 1)"
    echo "saved=$new"
    show "$after"
    ;;
ls)
    [ $# -eq 2 ] || fail "usage: rke2m-snapshot ls TIMEOUT"
    table=$(run "$2" "rke2 etcd-snapshot ls" "$rke2" etcd-snapshot ls) || exit 1
    show "$table"
    ;;
delete)
    [ $# -ge 3 ] || fail "usage: rke2m-snapshot delete TIMEOUT FULL-NAME..."
    limit=$2
    shift 2
    before=$(run "$limit" "rke2 etcd-snapshot ls" "$rke2" etcd-snapshot ls) || exit 1
    for name in "$@"; do
        case "$name" in
        '' | -* | */* | *[!A-Za-z0-9._-]*) fail "refusing snapshot name '$name'" ;;
        esac
        if printf '%s\n' "$before" | names | grep -qxF -- "$name"; then
            run "$limit" "rke2 etcd-snapshot delete $name" "$rke2" etcd-snapshot delete "$name" >/dev/null || exit 1
            echo "deleted=$name"
        else
            echo "absent=$name"
        fi
    done
    table=$(run "$limit" "rke2 etcd-snapshot ls" "$rke2" etcd-snapshot ls) || exit 1
    show "$table"
    ;;
*)
    fail "usage: rke2m-snapshot save|ls|delete ..."
    ;;
esac
