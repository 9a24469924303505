"""The docs say what the model cards say: the held-out tables in docs/models.md are printed from the
committed cards (`alert-classifier cards --block`); regenerate them when a card changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from models.cards import BEGIN, END, latest_cards, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_models_tables_equal_the_cards():
    docs = (ROOT / "docs" / "models.md").read_text()
    assert BEGIN in docs and END in docs, "docs/models.md lost its cards block"
    shown = docs[docs.index(BEGIN) + len(BEGIN):docs.index(END)].strip()
    assert shown == markdown(latest_cards()).strip(), (
        "docs/models.md disagrees with the model cards: paste `alert-classifier cards --block` there")


def test_cards_command_prints_every_model_and_its_headline_figure():
    out = subprocess.run([sys.executable, "-m", "service.cli", "cards"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    cards = {c["name"]: c for c in latest_cards()}
    for name, card in cards.items():
        assert f"**{name} {card['version']}**" in out.stdout
    whole = cards["rrlyrae"]["metrics"]["held_out_real_history_alerts_audited_labels"]
    row = next(line for line in out.stdout.splitlines() if "whole histories, audited labels" in line)
    assert f"{whole['completeness']:.3f}" in row and f"{whole['contamination']:.3f}" in row
