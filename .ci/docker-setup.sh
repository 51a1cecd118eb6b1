#!/usr/bin/env bash
# Make a local Docker engine and a local Redis image available for the `docker` tests.
#
# Idempotent: every step checks first and is skipped when already done, so a second run
# takes about a second. Steps:
#   1. install Debian's docker.io (dockerd, containerd, runc) if dockerd is missing;
#   2. start dockerd by hand in the background if `docker info` does not answer
#      (no systemd here); its log goes to $AGENTMEM_DOCKERD_LOG;
#   3. build $AGENTMEM_REDIS_IMAGE (default agentmem-redis:7.0) if absent: no registry
#      (Docker Hub) is reachable, so the image is a tiny rootfs made of Debian's own
#      redis-server binary plus the shared libraries `ldd` lists, `docker import`ed.
#
# Ryuk (testcontainers' reaper) cannot be pulled either: run the tests with
# TESTCONTAINERS_RYUK_DISABLED=true (agentmem.testing.docker sets it when unset).
#
# Environment knobs:
#   AGENTMEM_REDIS_IMAGE    image name to build            (default agentmem-redis:7.0)
#   AGENTMEM_DOCKERD_LOG    dockerd log file               (default /var/log/agentmem-dockerd.log)
#   AGENTMEM_DOCKERD_FLAGS  extra dockerd flags; when unset the defaults are tried first,
#                           then "--storage-driver=vfs --iptables=false" as a fallback
#   AGENTMEM_DOCKERD_WAIT   seconds to wait for dockerd to answer (default 60)
set -euo pipefail

IMAGE="${AGENTMEM_REDIS_IMAGE:-agentmem-redis:7.0}"
DOCKERD_LOG="${AGENTMEM_DOCKERD_LOG:-/var/log/agentmem-dockerd.log}"
DOCKERD_WAIT="${AGENTMEM_DOCKERD_WAIT:-60}"
FALLBACK_FLAGS="--storage-driver=vfs --iptables=false"

say() { printf '[docker-setup] %s\n' "$*"; }
die() {
    printf '[docker-setup] ERROR: %s\n' "$*" >&2
    exit 1
}

START=$(date +%s)

# One setup at a time (tox envs or parallel jobs may call this together).
exec 9>/tmp/agentmem-docker-setup.lock
if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "another docker-setup.sh held /tmp/agentmem-docker-setup.lock for 300 s"
fi

engine_answers() {
    # Bounded: `docker info` against a hung socket would otherwise block.
    timeout 10 docker info >/dev/null 2>&1
}

apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $* (or install it yourself)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >/tmp/agentmem-apt.log 2>&1; then
        say "apt-get install $* failed; running apt-get update and retrying"
        apt-get update -q >>/tmp/agentmem-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "$@" >>/tmp/agentmem-apt.log 2>&1 ||
            die "apt-get install $* failed; see /tmp/agentmem-apt.log: $(tail -3 /tmp/agentmem-apt.log)"
    fi
}

# --- 1. packages -----------------------------------------------------------------
if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
    say "docker.io: already installed ($(dockerd --version 2>/dev/null || echo '?'))"
else
    say "docker.io: installing with apt-get"
    apt_install docker.io
    say "docker.io: installed ($(dockerd --version))"
fi

# --- 2. the engine -----------------------------------------------------------------
# A pid file left by a dockerd/containerd that was killed (the session ended) is harmless
# unless its pid now belongs to another process: then dockerd refuses to start, or waits
# on a containerd that is not there. Remove such files when they don't name the program.
runs_as() { # pid comm: true if pid is a live (not zombie) process named comm
    local state
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null || true)" = "$2" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

clear_stale_pidfile() { # file expected-comm
    local file=$1 comm=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    if runs_as "$pid" "$comm"; then
        return 0
    fi
    say "removing stale $file (pid '${pid}' is not $comm)"
    rm -f "$file"
}

DOCKERD_PID=""
start_dockerd() { # flags...
    clear_stale_pidfile /var/run/docker.pid dockerd
    clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    printf '\n=== %s: dockerd %s\n' "$(date -u +%FT%TZ)" "$*" >>"$DOCKERD_LOG"
    # setsid + nohup: the engine outlives this script and the shell that ran it.
    # shellcheck disable=SC2086
    # 9>&-: the engine must not inherit (and so hold forever) the setup lock.
    setsid nohup dockerd "$@" </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
    DOCKERD_PID=$!
    local waited=0
    while [ "$waited" -lt "$DOCKERD_WAIT" ]; do
        if engine_answers; then
            say "dockerd (pid $DOCKERD_PID, flags: ${*:-none}) answers after ${waited}s; log: $DOCKERD_LOG"
            return 0
        fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            say "dockerd (flags: ${*:-none}) exited; last log lines:"
            tail -5 "$DOCKERD_LOG" | sed 's/^/    /'
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "dockerd (flags: ${*:-none}) did not answer within ${DOCKERD_WAIT}s; stopping it"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    return 1
}

if engine_answers; then
    say "dockerd: already answering"
else
    [ "$(id -u)" = 0 ] || die "dockerd is not answering and only root can start it here"
    if pid=$(cat /var/run/docker.pid 2>/dev/null) && runs_as "$pid" dockerd; then
        die "a dockerd (pid $pid) runs but does not answer 'docker info' within 10 s; see $DOCKERD_LOG"
    fi
    if [ -n "${AGENTMEM_DOCKERD_FLAGS:-}" ]; then
        # shellcheck disable=SC2086
        start_dockerd $AGENTMEM_DOCKERD_FLAGS ||
            die "dockerd with AGENTMEM_DOCKERD_FLAGS='$AGENTMEM_DOCKERD_FLAGS' did not come up; see $DOCKERD_LOG"
    else
        # shellcheck disable=SC2086
        start_dockerd || start_dockerd $FALLBACK_FLAGS ||
            die "dockerd did not come up with default flags nor '$FALLBACK_FLAGS'; see $DOCKERD_LOG"
    fi
fi

# Stopped containers that an interrupted test run left behind (Ryuk is off, so nothing
# else reaps them). Running ones are left alone: another test run may own them.
docker container prune -f --filter label=org.testcontainers.lang=python >/dev/null 2>&1 || true

# --- 3. the image --------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE: already present"
else
    if ! command -v redis-server >/dev/null 2>&1; then
        say "redis-server: installing with apt-get (only its binary goes into the image)"
        apt_install redis-server
    fi
    VERSION=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
    SRC=$(readlink -f "$(command -v redis-server)") # Debian: redis-server -> redis-check-rdb
    say "image $IMAGE: building from $SRC (Redis $VERSION)"
    ROOTFS=$(mktemp -d /tmp/agentmem-redis-rootfs.XXXXXX)
    trap 'rm -rf "$ROOTFS"' EXIT
    mkdir -p "$ROOTFS"/{usr/bin,etc,data,tmp}
    chmod 1777 "$ROOTFS/tmp"
    # Copied (not linked) under the name redis-server: Redis picks its mode from argv[0].
    cp -L "$SRC" "$ROOTFS/usr/bin/redis-server"
    # The dynamic loader and every library ldd resolves, at the same paths.
    ldd "$SRC" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$ROOTFS$(dirname "$lib")"
        cp -L "$lib" "$ROOTFS$lib"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$ROOTFS/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
    tar -C "$ROOTFS" -c . | docker import \
        --change 'CMD ["/usr/bin/redis-server","--bind","0.0.0.0","--protected-mode","no"]' \
        --change 'EXPOSE 6379' \
        --change 'WORKDIR /data' \
        --change "LABEL org.opencontainers.image.title=agentmem-redis org.opencontainers.image.version=$VERSION" \
        --message "agentmem: Debian redis-server $VERSION" \
        - "$IMAGE" >/dev/null || die "docker import of $IMAGE failed"
    rm -rf "$ROOTFS"
    trap - EXIT
    # Smoke check: the binary and its libraries load inside the image.
    got=$(timeout 60 docker run --rm --network none "$IMAGE" /usr/bin/redis-server --version) ||
        die "image $IMAGE was imported but redis-server does not run in it"
    say "image $IMAGE: imported ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes); ${got%% sha=*}"
fi

say "done in $(($(date +%s) - START))s (image: $IMAGE; run tests with TESTCONTAINERS_RYUK_DISABLED=true)"
