# Shared by scripts/test, scripts/demo and scripts/bench: install what is missing, then build.
# Sourced, not run. Works as root or as a user with sudo, on Debian 12.

TREATY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build, the tests and the demo need.
TREATY_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libpqxx-dev libpoco-dev librdkafka-dev libyaml-cpp-dev libgtest-dev libgmock-dev
  postgresql chromium chromium-driver openssl libboost-dev libssl-dev
  faketime  # libfaketime: the clock-skew tests run a treatyd whose clock is off
  python3 python3-psycopg2  # the Python participant (participants/python) and its interop test
  # pg_auto_failover (Debian's, for PostgreSQL 15): the `ha` tests' monitor and two nodes
  pg-auto-failover-cli postgresql-15-auto-failover
)

# What scripts/compose-test adds (containers, run with podman): installed only by it.
TREATY_CONTAINER_PACKAGES=(
  podman runc netavark aardvark-dns  # runc: crun is refused by some hosts' cgroup setup
  catatonit                          # the init of containers with `init: true`
  mmdebstrap                         # the Debian 12 base image, made locally (no registry)
  docker-compose                     # runs the compose file through podman's Docker API
  curl jq
)

# What scripts/check-style (run by scripts/test) needs besides: Clang 14's compiler (for its
# -Wthread-safety analysis), clang-format and clang-tidy.
TREATY_STYLE_PACKAGES=(clang-14 clang-format-14 clang-tidy-14 python3)

treaty_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# treaty_install_missing [package...]: TREATY_PACKAGES when none are named.
treaty_install_missing() {
  local missing=() wanted=("$@")
  [ ${#wanted[@]} -gt 0 ] || wanted=("${TREATY_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  treaty_say "installing ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# treaty_build DIR BUILD_TYPE [extra cmake args...]
treaty_build() {
  local dir="$1" type="$2"
  shift 2
  treaty_say "building ($type) in $dir"
  cmake -S "$TREATY_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
