# shellcheck shell=sh
# rke2-manager's fence check (docs/fencing.md), sourced first by every step that runs on a
# node; installed as /var/lib/rke2-manager/bin/rke2m-step. A raw step begins with
#
#   RKE2M_FENCE=<cluster>:<token>:<job> RKE2M_STEP=<name>; . /var/lib/rke2-manager/bin/rke2m-step
#
# (the playbooks' rke2m_fenced); Python modules come through the job's interpreter link
# (bin/rke2m-python.<cluster>.<token>.<job>, see rke2m-fence), which sources it too. In the
# step's shell, it
#   1. exports RKE2M_FENCE=<cluster>:<token>:<job>:<pid of the step's shell>, so every
#      process the step starts carries it (systemd starts services with a clean environment:
#      RKE2 never does);
#   2. registers the step's shell under steps/ (a raise ends it with its process group);
#   3. checks that the node's fence names this very job (its raise came first and nothing
#      newer since): otherwise it says why and exits 97, before the step changed anything —
#      "fenced: node <node> was taken over by job <N>" when a newer job (or another
#      cluster's) raised it;
#   4. starts rke2m-watch, which ends the step when its SSH channel goes away.
# Everything here runs in the step's own shell: names start with rke2m_ to stay out of its way.

rke2m_dir=/var/lib/rke2-manager

rke2m_journal() {
    printf '%s job=%s token=%s step=%s %s\n' "$(date +%s)" "$rke2m_job" "$rke2m_lock_token" "$1" \
        "$2" >>"$rke2m_dir/fence.log"
}

rke2m_refuse() {
    rke2m_journal refused "cluster=$rke2m_cluster pid=$$ $2 name=$RKE2M_STEP"
    if [ "${RKE2M_STEP_JSON:-}" = 1 ]; then
        # a Python module's step: Ansible reads the module's result from stdout
        printf '{"failed": true, "rc": 97, "msg": "%s"}\n' "$1"
    fi
    printf '%s\n' "$1" >&2
}

rke2m_begin() {
    rke2m_cluster=${RKE2M_FENCE%%:*}
    rke2m_rest=${RKE2M_FENCE#*:}
    rke2m_lock_token=${rke2m_rest%%:*}
    rke2m_job=${rke2m_rest#*:}
    RKE2M_FENCE=$rke2m_cluster:$rke2m_lock_token:$rke2m_job:$$
    export RKE2M_FENCE

    # register before the check: a raise that comes after the check finds this step
    rke2m_stat=''
    IFS= read -r rke2m_stat <"/proc/$$/stat"
    rke2m_stat=${rke2m_stat##*) }
    set -f
    # shellcheck disable=SC2086 # split into the fields, on purpose
    set -- $rke2m_stat
    set +f
    printf '%s %s\n' "${20}" "$rke2m_job" 2>/dev/null \
        >"$rke2m_dir/steps/$rke2m_cluster.$rke2m_lock_token.$$" || {
        rke2m_refuse "node $(uname -n): the fence was not raised before this step"
        return 1
    }

    rke2m_line=''
    IFS= read -r rke2m_line 2>/dev/null <"$rke2m_dir/fence"
    case "$rke2m_line " in
        "cluster=$rke2m_cluster token=$rke2m_lock_token job=$rke2m_job "*) ;;
        *)
            rke2m_node=$(uname -n) rke2m_by='' rke2m_of='' rke2m_newer=''
            set -f
            for rke2m_word in $rke2m_line; do
                case $rke2m_word in
                    cluster=*) rke2m_of=${rke2m_word#cluster=} ;;
                    token=*) rke2m_newer=${rke2m_word#token=} ;;
                    job=*) rke2m_by=${rke2m_word#job=} ;;
                    node=*) rke2m_node=${rke2m_word#node=} ;;
                esac
            done
            set +f
            if [ -n "$rke2m_by" ] && { [ "$rke2m_of" != "$rke2m_cluster" ] \
                || [ "$rke2m_newer" -gt "$rke2m_lock_token" ] 2>/dev/null; }; then
                # a newer job of this cluster, or another cluster's, raised it since
                rke2m_refuse "fenced: node $rke2m_node was taken over by job $rke2m_by" \
                    "by_job=$rke2m_by by_token=$rke2m_newer by_cluster=$rke2m_of"
            else
                rke2m_refuse "node $rke2m_node: the fence was not raised before this step" \
                    "fence_cluster=${rke2m_of:-none} fence_token=${rke2m_newer:-none} fence_job=${rke2m_by:-none}"
            fi
            return 1
            ;;
    esac
    rke2m_journal start "cluster=$rke2m_cluster pid=$$ name=$RKE2M_STEP"

    rke2m_python=''
    IFS= read -r rke2m_python <"$rke2m_dir/python"
    if [ -n "$rke2m_python" ]; then
        "$rke2m_python" -I -S "$rke2m_dir/bin/rke2m-watch" "$$" </dev/null &
    fi
    return 0
}

rke2m_begin || exit 97
