#!/usr/bin/env bash
# Load a `cadenza env finetune --format lerobot` export with the real LeRobot and read every frame.
# Not part of CI: LeRobot pins an older torch, so it gets a throwaway venv of its own (several GB).
#   scripts/check_lerobot.sh [DATASET_DIR]
# Without DATASET_DIR it exports 20 missions of a fresh copy of examples/rescue-dog first.
# LEROBOT_VERSION (default 0.4.4) and LEROBOT_VENV (default /tmp/cadenza-lerobot-venv) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEROBOT_VENV:-/tmp/cadenza-lerobot-venv}
VERSION=${LEROBOT_VERSION:-0.4.4}
ds=${1:-}
if [ -z "$ds" ]; then
  work=$(mktemp -d)
  cp -r examples/rescue-dog "$work/dog"
  rm -rf "$work/dog/.cadenza" "$work/dog/.cadenza-env"
  .venv/bin/cadenza env run "$work/dog" --headless --episodes 20
  .venv/bin/cadenza env finetune "$work/dog" "$work"/dog/.cadenza-env/*.log.jsonl -o "$work/ds" --format lerobot
  ds="$work/ds"
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "lerobot==$VERSION"
HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$ds" "$VERSION" <<'PY'
import json
import sys
from pathlib import Path

from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, version = Path(sys.argv[1]), sys.argv[2]
ds = LeRobotDataset("local/rescue-dog", root=root)
info = json.loads((root / "meta" / "info.json").read_text())
frames = [ds[i] for i in range(len(ds))]
assert len(frames) == info["total_frames"] and ds.num_episodes == info["total_episodes"]
first = frames[0]
print(f"lerobot {version}: loaded {root} ({info['codebase_version']}): {ds.num_episodes} episodes, "
      f"{len(frames)} frames, every frame read; frame 0: task {first['task']!r}, "
      f"observation.state {tuple(first['observation.state'].shape)}, action {tuple(first['action'].shape)}")
PY
