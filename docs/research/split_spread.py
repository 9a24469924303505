"""Research: how much the science figures move with the held-out draw (docs/models.md, "Where the
science targets stand"). Not part of the service.

Each `alert-classifier train --seed S --models rrlyrae supernova --out DIR` draws another split of
every survey (a different 30% of each BTS type and of the EROS-1 stars held out) and fits the same
recipe; its cards hold the figures judged on that draw. This prints the issue's rows from each
folder's cards, their mean and standard deviation, as a Markdown table:

    .venv/bin/python docs/research/split_spread.py models/artifacts /tmp/seed43 /tmp/seed44 ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

VERSION = "2.7.0"
COLUMNS = ("SN recall", "Ia vs CC", "type accuracy", "macro F1", "recall II", "recall Ib/c", "recall SLSN",
           "3rd det. Ia vs CC", "3rd det. accuracy", "calib. error full", "calib. error 3rd det.",
           "RRL year completeness", "RRL year contamination", "RRL history completeness",
           "RRL history contamination")


def row(folder: Path) -> tuple[str, list[float]]:
    sn = json.loads((folder / "supernova" / VERSION / "card.json").read_text())
    rr = json.loads((folder / "rrlyrae" / VERSION / "card.json").read_text())["metrics"]
    full, third = sn["metrics"]["held_out_bts_full"], sn["metrics"]["held_out_bts_first_3_detections"]
    recall = {k: v["recall"] for k, v in full["type_per_class"].items()}
    year = rr["held_out_eros_latest_alerts_audited_labels"]
    history = rr["held_out_eros_history_alerts_audited_labels"]
    return str(sn["params"]["random_state"]), [
        full["sn_recall"], full["ia_vs_cc_auc"], full["type_accuracy"], full["type_macro_f1"],
        recall["SN II"], recall["SN Ib/c"], recall["SLSN"], third["ia_vs_cc_auc"], third["type_accuracy"],
        full["top_class_calibration_error"], third["top_class_calibration_error"],
        year["completeness"], year["contamination"], history["completeness"], history["contamination"]]


def main() -> None:
    folders = [Path(a) for a in sys.argv[1:]]
    if not folders:
        sys.exit(__doc__)
    rows = [row(f) for f in folders]
    values = np.array([r for _, r in rows], dtype=float)
    print("| split (seed) | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for (seed, r) in rows:
        print(f"| {seed} | " + " | ".join(f"{v:.3f}" for v in r) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in values.mean(axis=0)) + " |")
    print("| standard deviation | " + " | ".join(f"{v:.3f}" for v in values.std(axis=0, ddof=1)) + " |")


if __name__ == "__main__":
    main()
