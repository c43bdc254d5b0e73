#!/bin/bash
# The compose test's Kafka stand-in: treaty-devbroker listening on this container's address,
# port 9092 (see devbroker-listen.c), so that kafka:9092 works from every container.
set -euo pipefail
read -r address _ < <(hostname -I)
export TREATY_DEVBROKER_LISTEN="$address:9092" LD_PRELOAD=/usr/local/lib/devbroker-listen.so
exec treaty-devbroker "$@"
