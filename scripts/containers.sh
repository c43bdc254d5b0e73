# Container helpers for scripts/compose-test (and later compose variants). Sourced after
# setup.sh, not run. Debian 12's podman (runtime runc, settings in
# integration-tests/containers/containers.conf), images made locally because no image registry
# is reachable, and Debian's docker-compose (1.29) driving podman's Docker-compatible API.
#
#   treaty_podman_ready                    podman can run a container here, or a clear error
#   treaty_base_image                      debian:12 from mmdebstrap, made once and kept
#   treaty_build_image TAG FILE CONTEXT [EXTRA_TAG...]
#   treaty_build_staged_image TAG FILE CONTEXT STAGE [EXTRA_TAG...]   keeps one build stage
#   treaty_stack_images                    the images of deploy/docker-compose.yml, built here
#   treaty_compose_start PROJECT_DIR FILE... starts podman's API service, sets the project up
#   treaty_compose ARGS...                 docker-compose with the files given to _start
#   treaty_compose_up_healthy TIMEOUT_S    up -d, then every service running and healthy
#   treaty_container SERVICE               the id of a service's container
#   treaty_wait_healthy SERVICE TIMEOUT_S
#   treaty_compose_teardown                containers, networks, volumes, API service (for traps)
#   free_port, api METHOD URL [BODY], json FILTER TEXT, wait_for TIMEOUT_S COMMAND...
# shellcheck shell=bash

TREATY_CONTAINERS_DIR="$TREATY_ROOT/integration-tests/containers"
export CONTAINERS_CONF="$TREATY_CONTAINERS_DIR/containers.conf"
TREATY_BASE_IMAGE=docker.io/library/debian:12

# State of the running compose project (one per shell).
TREATY_COMPOSE_STATE=""   # temp dir: the API socket, the logs, the compose file as given
TREATY_COMPOSE_PROJECT=""
TREATY_COMPOSE_ARGS=()
TREATY_PODMAN_SERVICE_PID=""
TREATY_HEALTH_TICKER_PID=""

treaty_podman_ready() {
  local err
  if ! err=$(podman run --rm --network none "$TREATY_BASE_IMAGE" true 2>&1); then
    echo "podman cannot run a container on this machine (CONTAINERS_CONF=$CONTAINERS_CONF):" >&2
    echo "$err" >&2
    return 1
  fi
}

# This host's apt sources files for Debian (the base image uses the same).
treaty_apt_sources() {
  local f
  if [ -s /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    echo /etc/apt/sources.list
  fi
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ] && grep -qE '(^deb |^URIs:).*debian' "$f"; then echo "$f"; fi
  done
}

# The Debian 12 base every image here starts from, tagged so that FROM debian:12 finds it. Made
# with mmdebstrap from the same apt sources and settings as this host (mirror, proxy, validity),
# so that apt-get works in image builds wherever it works here. Kept between runs.
treaty_base_image() {
  if podman image exists "$TREATY_BASE_IMAGE"; then
    return 0
  fi
  treaty_say "making the base image $TREATY_BASE_IMAGE (mmdebstrap, minbase)"
  local sources=() aptopts=() line
  mapfile -t sources < <(treaty_apt_sources)
  while IFS= read -r line; do
    aptopts+=(--aptopt="$line")
  done < <(apt-config dump | grep -E '^Acquire::((https?|ftp)::Proxy|Check-Valid-Until|Check-Date) ')
  mmdebstrap --variant=minbase --quiet "${aptopts[@]}" bookworm - "${sources[@]}" |
    podman import --quiet --change 'CMD ["bash"]' - "$TREATY_BASE_IMAGE" >/dev/null
}

# treaty_build_image TAG DOCKERFILE CONTEXT [EXTRA_TAG...]: layers are cached between runs. RUN
# steps use the host's network, so apt-get reaches the mirror exactly as it does here (the DNS
# server a host uses may not answer containers; no bridge or NAT to depend on).
treaty_build_image() {
  local tag="$1" file="$2" context="$3"
  shift 3
  local tags=(-t "$tag") t
  for t in "$@"; do tags+=(-t "$t"); done
  treaty_say "building image $tag from ${file#"$TREATY_ROOT"/}"
  podman build --layers --network host -f "$file" "${tags[@]}" "$context"
}

# treaty_build_staged_image TAG DOCKERFILE CONTEXT STAGE [EXTRA_TAG...]: as treaty_build_image,
# for a multi-stage Dockerfile whose build stage STAGE is kept under its own tag (TAG-STAGE, a
# cache for the next run); the one it replaces is removed, so that each source change does not
# leave a stale build stage (hundreds of MB) behind.
treaty_build_staged_image() {
  local tag="$1" file="$2" context="$3" stage="$4"
  shift 4
  local stage_tag="$tag-$stage" old
  old=$(podman image inspect "$stage_tag" --format '{{.ID}}' 2>/dev/null || true)
  treaty_say "building stage $stage of ${file#"$TREATY_ROOT"/}"
  podman build --layers --network host --target "$stage" -f "$file" -t "$stage_tag" "$context" ||
    return 1
  treaty_build_image "$tag" "$file" "$context" "$@" || return 1
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect "$stage_tag" --format '{{.ID}}')" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
}

# The images deploy/docker-compose.yml runs here: postgres:15 from Debian's PostgreSQL 15, the
# dev broker standing in for Kafka (compose-test.override.yml), and treaty:dev from
# deploy/Dockerfile. Each image also under localhost/: podman resolves a short name (postgres:15)
# to localhost/ first, so an image left there by hand would otherwise shadow the one built here.
treaty_stack_images() {
  treaty_build_image docker.io/library/postgres:15 "$TREATY_CONTAINERS_DIR/postgres/Dockerfile" \
    "$TREATY_CONTAINERS_DIR/postgres" localhost/postgres:15 || return 1
  treaty_build_staged_image localhost/treaty-devbroker:test \
    "$TREATY_CONTAINERS_DIR/devbroker/Dockerfile" "$TREATY_ROOT/integration-tests" build || return 1
  treaty_build_staged_image docker.io/library/treaty:dev "$TREATY_ROOT/deploy/Dockerfile" \
    "$TREATY_ROOT" build localhost/treaty:dev
}

# treaty_compose_start PROJECT_DIR FILE...: the first FILE is the user's compose file. Debian's
# docker-compose (1.29) predates the top-level `name:`; it gets the file without that line and the
# same name as its project name (-p), which is what `name:` sets. Everything else is as written.
treaty_compose_start() {
  local project_dir="$1" main="$2"
  shift 2
  TREATY_COMPOSE_STATE=$(mktemp -d /tmp/treaty-compose.XXXXXX)
  TREATY_COMPOSE_PROJECT=$(sed -n 's/^name: *\([A-Za-z0-9_-]*\) *$/\1/p' "$main")
  [ -n "$TREATY_COMPOSE_PROJECT" ] || TREATY_COMPOSE_PROJECT=$(basename "$project_dir")
  sed '/^name:/d' "$main" >"$TREATY_COMPOSE_STATE/$(basename "$main")"
  TREATY_COMPOSE_ARGS=(-p "$TREATY_COMPOSE_PROJECT" --project-directory "$project_dir"
                       -f "$TREATY_COMPOSE_STATE/$(basename "$main")")
  local f
  for f in "$@"; do TREATY_COMPOSE_ARGS+=(-f "$f"); done

  # podman's Docker-compatible API, for docker-compose, on a socket of our own.
  podman system service --time=0 "unix://$TREATY_COMPOSE_STATE/podman.sock" \
    >"$TREATY_COMPOSE_STATE/podman-service.log" 2>&1 &
  TREATY_PODMAN_SERVICE_PID=$!
  export DOCKER_HOST="unix://$TREATY_COMPOSE_STATE/podman.sock"
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fsS --unix-socket "$TREATY_COMPOSE_STATE/podman.sock" http://d/_ping >/dev/null 2>&1 && break
    kill -0 "$TREATY_PODMAN_SERVICE_PID" 2>/dev/null || break
    sleep 0.1
  done
  curl -fsS --unix-socket "$TREATY_COMPOSE_STATE/podman.sock" http://d/_ping >/dev/null 2>&1 || {
    echo "podman system service did not come up:" >&2
    cat "$TREATY_COMPOSE_STATE/podman-service.log" >&2
    return 1
  }

  # Health checks: Docker's daemon runs them itself; podman leaves that to systemd timers, and
  # there is no systemd here. This ticker runs each container's own check every 2 s (podman
  # healthcheck run: the configured command, retries and resulting state are podman's).
  (
    while true; do
      for c in $(podman ps -q --filter "label=com.docker.compose.project=$TREATY_COMPOSE_PROJECT" \
                   --filter status=running 2>/dev/null); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) &
  TREATY_HEALTH_TICKER_PID=$!
}

treaty_compose() {
  docker-compose "${TREATY_COMPOSE_ARGS[@]}" "$@"
}

treaty_container() {
  treaty_compose ps -q "$1" 2>/dev/null | head -n1
}

# A service's state: "healthy", "unhealthy", "starting" (health check not passed yet),
# "running" (no health check), or the container's status (exited, ...).
treaty_service_state() {
  local id
  id=$(treaty_container "$1")
  [ -n "$id" ] || { echo missing; return; }
  podman inspect "$id" --format \
    '{{if ne .State.Status "running"}}{{.State.Status}}{{else if .State.Health.Status}}{{.State.Health.Status}}{{else}}running{{end}}' \
    2>/dev/null || echo missing
}

treaty_wait_healthy() {
  local service="$1" timeout="$2" state deadline=$((SECONDS + $2))
  while true; do
    state=$(treaty_service_state "$service")
    case "$state" in
      healthy | running) return 0 ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$service is $state after ${timeout}s" >&2
      return 1
    fi
    sleep 0.5
  done
}

# Starts every service (docker-compose honours depends_on's service_healthy conditions), then
# waits until each is running and, where it has a health check, healthy.
treaty_compose_up_healthy() {
  local timeout="$1" s deadline=$((SECONDS + $1))
  timeout "$timeout" docker-compose "${TREATY_COMPOSE_ARGS[@]}" up -d --no-build || return 1
  for s in $(treaty_compose config --services); do
    treaty_wait_healthy "$s" $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) || return 1
  done
}

# Removes the project's containers, networks and volumes, then stops the API service and the
# health ticker. Safe to call more than once and after a partial start.
treaty_compose_teardown() {
  [ -n "$TREATY_COMPOSE_STATE" ] || return 0
  if [ -n "$TREATY_PODMAN_SERVICE_PID" ]; then
    treaty_compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  fi
  if [ -n "$TREATY_HEALTH_TICKER_PID" ]; then
    kill "$TREATY_HEALTH_TICKER_PID" 2>/dev/null || true
    wait "$TREATY_HEALTH_TICKER_PID" 2>/dev/null || true
    TREATY_HEALTH_TICKER_PID=""
  fi
  # Whatever down left (it failed, or the API was not up): by the project's label.
  local label="label=com.docker.compose.project=$TREATY_COMPOSE_PROJECT" ids=()
  mapfile -t ids < <(podman ps -aq --filter "$label")
  [ ${#ids[@]} -eq 0 ] || podman rm -f -t 0 "${ids[@]}" >/dev/null 2>&1 || true
  mapfile -t ids < <(podman volume ls -q --filter "$label")
  [ ${#ids[@]} -eq 0 ] || podman volume rm -f "${ids[@]}" >/dev/null 2>&1 || true
  mapfile -t ids < <(podman network ls -q --filter "$label")
  [ ${#ids[@]} -eq 0 ] || podman network rm -f "${ids[@]}" >/dev/null 2>&1 || true
  if [ -n "$TREATY_PODMAN_SERVICE_PID" ]; then
    kill "$TREATY_PODMAN_SERVICE_PID" 2>/dev/null || true
    wait "$TREATY_PODMAN_SERVICE_PID" 2>/dev/null || true
    TREATY_PODMAN_SERVICE_PID=""
  fi
  rm -rf "$TREATY_COMPOSE_STATE"
  TREATY_COMPOSE_STATE=""
}

# --- what the compose tests share ---------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# api METHOD URL [BODY]: the body of the answer; the status code in $HTTP_CODE (when not run in
# a $(...) subshell).
HTTP_CODE=""
# shellcheck disable=SC2034  # HTTP_CODE is read by the scripts that source this file
api() {
  local out
  out=$(curl -sS -m 30 -X "$1" -H "Authorization: Bearer $TREATY_CLIENT_TOKEN" \
          -H 'Content-Type: application/json' ${3:+-d "$3"} -w '\n%{http_code}' "$2" 2>/dev/null) ||
    out=$'\n000'
  HTTP_CODE=${out##*$'\n'}
  printf '%s' "${out%$'\n'*}"
}
json() { jq -r "$1 // empty" 2>/dev/null <<<"$2" || true; }
# wait_for TIMEOUT_S COMMAND...: polls until COMMAND succeeds; fails after TIMEOUT_S.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.3
  done
}
