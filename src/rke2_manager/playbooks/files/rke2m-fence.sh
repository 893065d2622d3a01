#!/bin/sh
# rke2-manager's fence on a node (docs/fencing.md). Installed as
# /var/lib/rke2-manager/bin/rke2m-fence by the first step of every play; POSIX sh plus
# flock(1), no Python.
#
#   rke2m-fence raise CLUSTER TOKEN JOB NODE [FENCE_SH STEP_SH WATCH_PY]
#     Install the given script texts into bin/ when they differ, then raise the node's fence
#     to JOB's TOKEN for CLUSTER, under flock, by writing a temporary file and renaming it
#     over the fence. Exit 97, saying "fenced: node NODE was taken over by job N", when the
#     fence already holds a newer token of CLUSTER (N: the job that holds it). A fence of
#     another cluster is taken over (the node was moved). A raise ends every process still
#     running on the node for an older token of CLUSTER: the steps registered under steps/
#     with their process groups, and every process whose environment carries an older
#     RKE2M_FENCE tag; SIGTERM, then SIGKILL after KILL_GRACE seconds.
#
#   rke2m-python.CLUSTER.TOKEN.JOB ARGS...   (a link to rke2m-fence, made by JOB's raise)
#     The runs' ansible_python_interpreter (Ansible takes it as one path, without arguments):
#     checks the fence like every raw step does (see rke2m-step), then execs the node's Python
#     with ARGS (the module comes on stdin). Refused, it prints a failed module result, so
#     Ansible shows why.
#
# Tokens grow with every job of a cluster, so an older token belongs to a job that lost the
# cluster's lock: whatever it still runs here is stale by definition.
# shellcheck source-path=SCRIPTDIR
set -u

DIR=/var/lib/rke2-manager
FENCE=$DIR/fence
JOURNAL=$DIR/fence.log
JOURNAL_MAX=1048576
KILL_GRACE=5
REFUSED=97

die() {
    printf '%s\n' "$*" >&2
    exit 1
}

is_number() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

# journal JOB TOKEN STEP DETAILS: one line of the node's journal (appended: lines of steps
# running at once never mix).
journal() {
    printf '%s job=%s token=%s step=%s %s\n' "$(date +%s)" "$1" "$2" "$3" "$4" >>"$JOURNAL"
}

# read_fence: the fence's fields (f_cluster, f_token, f_job, f_node); empty when there is no
# fence or it cannot be read as one.
read_fence() {
    f_cluster='' f_token='' f_job=''
    line=''
    [ -f "$FENCE" ] || return 0
    IFS= read -r line <"$FENCE" || [ -n "$line" ] || return 0
    set -f
    for word in $line; do
        case $word in
            cluster=*) f_cluster=${word#cluster=} ;;
            token=*) f_token=${word#token=} ;;
            job=*) f_job=${word#job=} ;;
        esac
    done
    set +f
    if ! is_number "$f_cluster" || ! is_number "$f_token" || ! is_number "$f_job"; then
        f_cluster='' f_token='' f_job=''
    fi
}

# proc_stat PID: that process's state, process group and start time (p_state, p_pgid,
# p_start); false when it is gone.
proc_stat() {
    stat=''
    IFS= read -r stat 2>/dev/null <"/proc/$1/stat" || [ -n "$stat" ] || return 1
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    stat=${stat##*) }
    set -f
    # shellcheck disable=SC2086 # split into the fields, on purpose
    set -- $stat
    set +f
    [ $# -ge 20 ] || return 1
    p_state=$1 p_pgid=$3 p_start=${20}
}

# alive PID [START]: the process runs (a zombie does not), with that start time if given.
alive() {
    proc_stat "$1" || return 1
    [ "$p_state" != Z ] || return 1
    [ -z "${2:-}" ] || [ "$p_start" = "$2" ]
}

# install_scripts FENCE_SH STEP_SH WATCH_PY: write each into bin/ if it differs (atomically).
install_scripts() {
    mkdir -p "$DIR/bin" "$DIR/steps" || die "could not create $DIR/bin"
    for name in rke2m-fence rke2m-step rke2m-watch; do
        text=$1
        shift
        if ! printf '%s\n' "$text" | cmp -s - "$DIR/bin/$name"; then
            tmp=$DIR/bin/.$name.$$
            if ! { printf '%s\n' "$text" >"$tmp" && chmod 0755 "$tmp" \
                && mv -f "$tmp" "$DIR/bin/$name"; }; then
                die "could not install $DIR/bin/$name"
            fi
        fi
    done
    python=''
    for candidate in python3 /usr/libexec/platform-python python; do
        if python=$(command -v "$candidate"); then
            break
        fi
        python=''
    done
    if [ "$python" != "$(cat "$DIR/python" 2>/dev/null)" ]; then
        if ! { printf '%s\n' "$python" >"$DIR/.python.$$" \
            && mv -f "$DIR/.python.$$" "$DIR/python"; }; then
            die "could not write $DIR/python"
        fi
    fi
}

# end_stale CLUSTER TOKEN JOB: end every process running here for an older token of CLUSTER.
end_stale() {
    victims=''
    shells=''
    groups=''
    own_group=''
    if proc_stat $$; then
        own_group=$p_pgid
    fi
    # the steps' shells, as they registered themselves: they end with their process group
    for entry in "$DIR"/steps/*; do
        [ -f "$entry" ] || continue
        name=${entry##*/}
        s_cluster=${name%%.*}
        rest=${name#*.}
        s_token=${rest%%.*}
        s_pid=${rest#*.}
        s_start='' s_job=''
        read -r s_start s_job <"$entry" 2>/dev/null
        if ! is_number "$s_pid" || ! alive "$s_pid" "$s_start"; then
            rm -f "$entry"
            continue
        fi
        if [ "$s_cluster" != "$1" ] || ! is_number "$s_token" || [ "$s_token" -ge "$2" ]; then
            continue
        fi
        if [ "$p_pgid" -gt 1 ] && [ "$p_pgid" != "$own_group" ]; then
            groups="$groups $p_pgid"
        fi
        victims="$victims $s_pid"
        shells="$shells $s_pid"
        journal "$3" "$2" kill "cluster=$1 pid=$s_pid group=$p_pgid stale_token=$s_token stale_job=$s_job what=step"
    done
    # every process started by a step (tagged RKE2M_FENCE=cluster:token:job:step), also those
    # that left the step's process group (timeout(1) makes a group of its own)
    found=$(grep -l -a -s -F "RKE2M_FENCE=$1:" /proc/[0-9]*/environ)
    for environ in $found; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        tag=$(tr '\0' '\n' <"$environ" 2>/dev/null | sed -n 's/^RKE2M_FENCE=//p' | head -n 1)
        t_cluster=${tag%%:*}
        rest=${tag#*:}
        t_token=${rest%%:*}
        rest=${rest#*:}
        t_job=${rest%%:*}
        if [ "$t_cluster" != "$1" ] || ! is_number "$t_token" || [ "$t_token" -ge "$2" ] \
            || [ "$pid" = $$ ]; then
            continue
        fi
        case " $victims " in
            *" $pid "*) continue ;;
        esac
        victims="$victims $pid"
        comm=''
        read -r comm 2>/dev/null <"/proc/$pid/comm"
        journal "$3" "$2" kill "cluster=$1 pid=$pid stale_token=$t_token stale_job=$t_job what=$comm"
    done
    [ -n "$victims" ] || return 0
    say_fenced "$shells"
    signal TERM
    waited=0
    while [ "$waited" -lt $((KILL_GRACE * 5)) ]; do
        left=''
        for pid in $victims; do
            if alive "$pid"; then
                left="$left $pid"
            fi
        done
        [ -n "$left" ] || return 0
        sleep 0.2
        waited=$((waited + 1))
    done
    left=${left# }
    journal "$3" "$2" kill "cluster=$1 signal=KILL pids=$(printf '%s' "$left" | tr ' ' ,)"
    signal KILL
}

# signal SIG: send SIG to the victims and their steps' process groups.
signal() {
    for group in $groups; do
        kill -s "$1" -- "-$group" 2>/dev/null
    done
    for pid in $victims; do
        kill -s "$1" "$pid" 2>/dev/null
    done
}

# say_fenced PIDS: tell the stale runs why their steps end, on the steps' stderr (the SSH
# channel back to their manager, if it still reads); a pipe nobody drains cannot hold us up.
say_fenced() {
    for pid in $1; do
        [ -p "/proc/$pid/fd/2" ] || continue
        # shellcheck disable=SC2016 # expanded by that shell, from its arguments
        timeout 1 sh -c 'printf "%s\n" "$1" >"/proc/$2/fd/2"' sh \
            "fenced: node $NODE was taken over by job $JOB" "$pid" 2>/dev/null
    done
}

cmd_raise() {
    [ $# -eq 4 ] || [ $# -eq 7 ] || die "usage: rke2m-fence raise CLUSTER TOKEN JOB NODE [SCRIPTS]"
    CLUSTER=$1 TOKEN=$2 JOB=$3 NODE=$4
    if ! is_number "$CLUSTER" || ! is_number "$TOKEN" || ! is_number "$JOB"; then
        die "rke2m-fence: cluster, token and job must be numbers"
    fi
    umask 077
    mkdir -p "$DIR" || die "could not create $DIR"
    exec 9>>"$DIR/fence.lock"
    flock -w 60 9 || die "could not lock $DIR/fence.lock within 60s"
    if [ -f "$JOURNAL" ] && [ "$(wc -c <"$JOURNAL")" -gt "$JOURNAL_MAX" ]; then
        mv -f "$JOURNAL" "$JOURNAL.1"
    fi
    read_fence
    if [ "$f_cluster" = "$CLUSTER" ] && [ "$f_token" -gt "$TOKEN" ]; then
        # refused: nothing on the node changes but the journal
        journal "$JOB" "$TOKEN" refused "cluster=$CLUSTER by_token=$f_token by_job=$f_job what=raise"
        printf 'fenced: node %s was taken over by job %s\n' "$NODE" "$f_job" >&2
        exit $REFUSED
    fi
    if [ $# -eq 7 ]; then
        install_scripts "$5" "$6" "$7"
    fi
    if [ "$f_cluster" = "$CLUSTER" ] && [ "$f_token" -eq "$TOKEN" ]; then
        python_link
        exit 0
    fi
    if [ "$f_cluster" = "$CLUSTER" ]; then
        from="from_token=$f_token from_job=$f_job"
    elif [ -n "$f_cluster" ]; then
        from="from_cluster=$f_cluster from_token=$f_token from_job=$f_job"
    else
        from="from=none"
    fi
    tmp=$FENCE.$$
    if ! { printf 'cluster=%s token=%s job=%s node=%s\n' "$CLUSTER" "$TOKEN" "$JOB" "$NODE" \
        >"$tmp" && mv -f "$tmp" "$FENCE"; }; then
        die "could not write $FENCE"
    fi
    journal "$JOB" "$TOKEN" raise "cluster=$CLUSTER $from"
    end_stale "$CLUSTER" "$TOKEN" "$JOB"
    if [ "$f_cluster" = "$CLUSTER" ]; then
        # the interpreter links of jobs before the one just fenced out: not used again (its
        # own stays, so that its next module step is told why it is refused)
        for link in "$DIR/bin/rke2m-python.$CLUSTER".*; do
            rest=${link#"$DIR/bin/rke2m-python.$CLUSTER."}
            if [ -L "$link" ] && [ "${rest%%.*}" -lt "$f_token" ] 2>/dev/null; then
                rm -f "$link"
            fi
        done
    fi
    python_link
    exit 0
}

# python_link: this job's Python interpreter for Ansible's modules
python_link() {
    link=$DIR/bin/rke2m-python.$CLUSTER.$TOKEN.$JOB
    if [ ! -L "$link" ] && ! ln -s rke2m-fence "$link"; then
        die "could not create $link"
    fi
}

# cmd_python CLUSTER.TOKEN.JOB ARGS...
cmd_python() {
    RKE2M_FENCE=$(printf '%s' "$1" | tr . :) RKE2M_STEP=module RKE2M_STEP_JSON=1
    shift
    # shellcheck source=rke2m-step.sh
    . "$DIR/bin/rke2m-step"
    [ -n "$rke2m_python" ] || die "no Python on this node (python3, /usr/libexec/platform-python)"
    exec "$rke2m_python" "$@"
}

case ${0##*/} in
    rke2m-python.*.*.*) cmd_python "${0##*/rke2m-python.}" "$@" ;;
esac
command=${1:-}
[ $# -gt 0 ] && shift
case $command in
    raise) cmd_raise "$@" ;;
    *) die "usage: rke2m-fence raise CLUSTER TOKEN JOB NODE [SCRIPTS]" ;;
esac
