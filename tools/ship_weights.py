"""Copy a training run's weights into the package, with their provenance in the metadata.

Usage: python tools/ship_weights.py RUN_DIR [--which best|last] [--note TEXT]
Writes ipassr/weights/ipassr_x{scale}.safetensors (fp32), the file `load_model(scale=s)` uses.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ipassr.models.checkpoint import load_network, save_weights  # noqa: E402


def last_record(log: Path, event: str) -> dict | None:
    """The last record of one kind in a run's log.jsonl."""
    found = None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == event:
            found = record
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--which", choices=("best", "last"), default="best")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    source = args.run / "weights" / f"{args.which}.safetensors"
    model = load_network(source)
    config = (args.run / "config.toml").read_text()
    step = last_record(args.run / "log.jsonl", "step") or {}
    validation = last_record(args.run / "log.jsonl", "validation") or {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    metadata = {
        "provenance": f"ipassr train, run {args.run.name}, {args.which} weights",
        "trained_steps": str(step.get("global_step", "unknown")),
        "training_config_toml": config,
        "last_validation": json.dumps(validation.get("val", {})),
        "shipped_on": datetime.date.today().isoformat(),
        "code_commit": commit,
        "note": args.note,
    }
    target = REPO / "ipassr" / "weights" / f"ipassr_x{model.scale}.safetensors"
    save_weights(model, target, metadata)
    print(f"wrote {target} (x{model.scale}, step {metadata['trained_steps']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
