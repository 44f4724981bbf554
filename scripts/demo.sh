#!/usr/bin/env bash
# Set everything up, start a local Mosquitto, and run streamwatch on the bundled demo clips.
# Alerts appear in the daemon's log and, as MQTT events, in the "mosquitto_sub" lines.
# Stop with Ctrl-C; DEMO_SECONDS=N stops by itself after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

port=1883
if ! .venv/bin/python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',1883))==0)"; then
  port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
sleep 0.5
echo "==> Mosquitto on 127.0.0.1:$port; events below are what a subscriber of streamwatch/events sees"
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'streamwatch/events' -F 'MQTT %t %p' &
pids+=($!)

# A fresh state dir per run: faults left open by an earlier demo would otherwise stay open
# (no second "raised" event after a restart, by design - docs/mqtt.md).
sed -e "s/^  port: 1883$/  port: $port/" -e "s#^state_dir: .state\$#state_dir: $work/state#" \
  config/demo/demo.yaml > config/demo/.demo-run.yaml
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout --signal=TERM "$DEMO_SECONDS" .venv/bin/streamwatch run --config config/demo/.demo-run.yaml || true
else
  .venv/bin/streamwatch run --config config/demo/.demo-run.yaml || true
fi
