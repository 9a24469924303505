"""The model cards' held-out metrics as Markdown tables: `alert-classifier cards` prints them, and
docs/models.md carries them between markers (a test fails when the docs and the cards disagree)."""

from __future__ import annotations

import json
from pathlib import Path

from models.registry import ARTIFACTS, _version_key

BEGIN, END = "<!-- cards:begin (alert-classifier cards) -->", "<!-- cards:end -->"

# (heading, path into a metrics entry ("/" between keys), how to show it)
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "rrlyrae": [("views", "n", "int"), ("completeness", "completeness", "f3"),
                ("contamination", "contamination", "f3"), ("AUC", "auc", "f3"),
                ("calib. error", "calibration_error", "f3"),
                ("completeness at ≤ 5% contamination", "at_contamination_0.05/completeness", "f3")],
    "supernova": [("views", "n", "int"), ("SN recall", "sn_recall", "f3"), ("SN AUC", "sn_auc", "f3"),
                  ("real variable stars called SN", "false_positive_rate_real_variables", "pct"),
                  ("Ia vs CC AUC", "ia_vs_cc_auc", "f3"),
                  ("Ia vs CC AUC, ≥ 20 detections", "ia_vs_cc_auc_20_detections_or_more/auc", "f3"),
                  ("calib. error", "sn_calibration_error", "f3")],
}
# The supernova type on real data, for the entries that carry type metrics (BTS held out)
TYPE_COLUMNS: list[tuple[str, str | tuple[str, ...], str]] = [
                ("SN views", "n_supernova_views", "int"), ("objects", "n_objects", "int"),
                ("type accuracy", "type_accuracy", "f3"), ("macro F1", "type_macro_f1", "f3"),
                ("recall Ia", ("type_per_class", "SN Ia", "recall"), "f3"),
                ("recall II", ("type_per_class", "SN II", "recall"), "f3"),
                ("recall Ib/c", ("type_per_class", "SN Ib/c", "recall"), "f3"),
                ("recall SLSN", ("type_per_class", "SLSN", "recall"), "f3"),
                ("top-class calib. error", "top_class_calibration_error", "f3")]
LABELS = {
    "held_out_all": "all held out",
    "held_out_plasticc": "PLAsTiCC",
    "held_out_sesar": "Sesar (RR Lyrae only)",
    "held_out_eros": "EROS-1, every view, raw labels",
    "held_out_eros_audited_labels": "EROS-1, every view, audited labels",
    "held_out_eros_latest_alerts_audited_labels": "EROS-1, latest alerts (one alert's year), audited labels",
    "held_out_eros_history_alerts_audited_labels": "EROS-1, whole histories (2.4 years), audited labels",
    "held_out_ogle3_synthetic": "OGLE-III pulsators in Rubin's cadence (synthetic)",
    "held_out_ogle3_synthetic_called_sn": "OGLE-III pulsators in Rubin's cadence (synthetic)",
    "held_out_real": "real surveys, every view, raw labels",
    "held_out_real_20_points_or_more": "real surveys, ≥ 20 points, raw labels",
    "held_out_real_40_points_or_more": "real surveys, ≥ 40 points, raw labels",
    "held_out_real_latest_alerts": "real surveys, latest alerts, raw labels",
    "held_out_real_window_alerts": "real surveys, window alerts, raw labels",
    "held_out_real_early_alerts": "real surveys, early alerts, raw labels",
    "held_out_real_history_alerts": "real surveys, whole histories, raw labels",
    "held_out_real_audited_labels": "real surveys, every view, audited labels",
    "held_out_real_history_alerts_audited_labels": "**real surveys, whole histories, audited labels**",
    "held_out_real_latest_alerts_audited_labels": "real surveys, latest alerts (one alert's year), "
                                                  "audited labels",
    "held_out_real_window_alerts_audited_labels": "real surveys, window alerts, audited labels",
    "held_out_real_early_alerts_audited_labels": "real surveys, early alerts (8th detection), audited labels",
    "cross_survey_trained_without_eros_tested_on_eros": "**across surveys: trained without EROS, tested "
                                                        "on EROS**",
    "external_ztf_30_sne": "real ZTF SNe (ALeRCE's 30; not RR Lyrae)",
    "held_out_early": "early (3-8 detections)",
    "held_out_full": "full (a year, or the whole history)",
    "held_out_g_r_only_all": "the same views in g and r only",
    "held_out_g_r_only_early": "g and r only, early",
    "held_out_g_r_only_full": "g and r only, full",
    "held_out_seen_nearer_all": "held-out PLAsTiCC objects seen nearer, all",
    "held_out_seen_nearer_early": "seen nearer, early",
    "held_out_seen_nearer_full": "seen nearer, full",
    "held_out_bts_seen_farther_all": "held-out BTS objects seen farther (Rubin's r and i, z ~ 0.3), all",
    "held_out_bts_seen_farther_early": "BTS seen farther, early",
    "held_out_bts_seen_farther_full": "BTS seen farther, full",
    "external_ztf_30_sne_all": "real ZTF SNe (ALeRCE's 30, never trained on): every view",
    "external_ztf_30_sne_early": "real ZTF SNe: early (3-8 detections)",
    "external_ztf_30_sne_full": "**real ZTF SNe (ALeRCE's 30, never trained on): full curves**",
    "held_out_bts_all": "real ZTF BTS, held-out objects: every view",
    "held_out_bts_early": "real ZTF BTS held out: early (3-8 detections)",
    "held_out_bts_full": "**real ZTF BTS held out: full curves**",
    "held_out_bts_first_3_detections": "**real ZTF BTS held out: first 3 detections**",
    "across_surveys_trained_without_bts_tested_on_bts_all": "across surveys: trained without BTS, "
                                                            "every BTS object, every view",
    "across_surveys_trained_without_bts_tested_on_bts_early": "trained without BTS: BTS early",
    "across_surveys_trained_without_bts_tested_on_bts_full": "trained without BTS: BTS full curves",
}


def _get(entry: dict, path: str | tuple[str, ...]):
    for part in path if isinstance(path, tuple) else path.split("/"):
        if not isinstance(entry, dict) or part not in entry:
            return None
        entry = entry[part]
    return entry


def _show(value, how: str) -> str:
    if value is None:
        return "–"
    if how == "int":
        return f"{int(value):,}"
    if how == "pct":
        return f"{100 * float(value):.2f}%"
    return f"{float(value):.3f}"


def latest_cards(artifacts: Path = ARTIFACTS) -> list[dict]:
    cards = []
    for model_dir in sorted(p for p in artifacts.iterdir() if p.is_dir()):
        versions = sorted((p for p in model_dir.iterdir() if (p / "card.json").exists()),
                          key=lambda p: _version_key(p.name))
        if versions:
            cards.append(json.loads((versions[-1] / "card.json").read_text()))
    return cards


def markdown(cards: list[dict]) -> str:
    """One table per model: a row per held-out metrics entry of its card, in the card's order."""
    out = []
    for card in cards:
        if card.get("kind") == "anomaly":
            out += anomaly_tables(card)
            continue
        columns = COLUMNS.get(card["name"])
        if columns is None:
            continue
        final = ("; the shipped fit is refitted on every BTS object, the figures are its validation "
                 "fit's, which never saw the held-out objects" if "final_fit" in card["metrics"] else "")
        out += [f"**{card['name']} {card['version']}** (threshold 0.5; calib. error = expected "
                f"calibration error; `–`: not defined for that set{final})", "",
                "| held-out set | " + " | ".join(h for h, _, _ in columns) + " |",
                "|---" * (len(columns) + 1) + "|"]
        for key, entry in card["metrics"].items():
            if key == "final_fit":  # what was refitted, not a held-out set
                continue
            label = LABELS.get(key, key.replace("_", " "))
            cells = " | ".join(_show(_get(entry, p), how) for _, p, how in columns)
            out.append(f"| {label} | {cells} |")
        out.append("")
        typed = {k: v for k, v in card["metrics"].items() if isinstance(v, dict) and "type_accuracy" in v}
        if typed:
            out += [f"**{card['name']} {card['version']}: the type of real supernovae** (argmax over Ia, "
                    "II, Ib/c, SLSN among true supernovae; 90% intervals over objects in the card)", "",
                    "| held-out set | " + " | ".join(h for h, _, _ in TYPE_COLUMNS) + " |",
                    "|---" * (len(TYPE_COLUMNS) + 1) + "|"]
            for key, entry in typed.items():
                cells = " | ".join(_show(_get(entry, p), how) for _, p, how in TYPE_COLUMNS)
                out.append(f"| {LABELS.get(key, key.replace('_', ' '))} | {cells} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def anomaly_tables(card: dict) -> list[str]:
    """Rare vs common, per detector compared and half of the judging objects (rare objects from
    either split, and from the held-out split only: "unseen", no model of the project trained on
    them); the feedback gain."""
    m = card["metrics"]
    sets = [s for s in ("real", "simulated", "real_unseen", "simulated_unseen") if s in m["held_out"]]
    out = [f"**{card['name']} {card['version']}** (rare vs common, the alert at each object's last "
           f"detection; chosen on the selection half: {m['chosen'].replace('_', ' ')})", "",
           "| detector | judging objects | " + " | ".join(f"{s.replace('_', ' ')} AUROC (top-1% precision)"
                                                        for s in sets) + " |",
           "|---|---|" + "---|" * len(sets)]
    for name, halves in m["compared"].items():
        for half in ("selection_half", "report_half"):
            label = half.replace("_", " ")
            if name == m["chosen"] and half == "report_half":
                label = f"**{label}**"
            cells = [f"{_show(halves[half][s]['auroc'], 'f3')} "
                     f"({_show(halves[half][s]['top_1pct_precision'], 'f3')})" for s in sets]
            out.append(f"| {name.replace('_', ' ')} | {label} | " + " | ".join(cells) + " |")
    out += ["", "Rare objects per set and half: " + "; ".join(
        f"{s.replace('_', ' ')} {m['selection_half'][s]['rare']} / {m['held_out'][s]['rare']}" for s in sets)]
    if isinstance(m["feedback"], dict):
        out += ["", "Feedback (report half; an expert labels the top 10 a night for 10 nights): rare objects "
                "found", "",
                "| set | views (rare) | shipped model, static | forest alone, static | with feedback |",
                "|---|---|---|---|---|"]
        for name, f in m["feedback"].items():
            out.append(f"| {name.replace('_', ' ')} | {f['pool_views']} ({f['pool_rare']}) | "
                       f"{f['found_static_model']} | {f['found_static_forest']} | "
                       f"{f['found_with_feedback']} |")
    return [*out, ""]


def block(cards: list[dict]) -> str:
    return f"{BEGIN}\n{markdown(cards)}{END}"
