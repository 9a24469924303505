"""The object explorer's pages, rendered on the server: pure functions from store rows to HTML with
inline SVG plots. No JavaScript and no CDN; 64-bit ids stay exact because they never pass through a
browser's numbers (JavaScript loses precision beyond 2**53)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

BAND_COLOURS = {"u": "#7b3fbf", "g": "#2a9d3f", "r": "#d1342f", "i": "#e08a12", "z": "#7a4b2a",
                "y": "#333333"}
CLASS_NAMES = {2323: "RR Lyrae", 2222: "SN Ia", 2223: "SN Ib/c", 2224: "SN II", 2242: "SLSN",
               2332: "AGN", 2325: "EB", 200: "Residual", 300: "NotClassified"}
CLASS_COLOURS = {2323: "#2f6fdf", 2222: "#d1342f", 2223: "#e08a12", 2224: "#2a9d3f", 2242: "#7b3fbf",
                 200: "#8a8f99", 300: "#cccccc"}
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 300, 70, 20, 16, 42

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; margin: 0; }
header { padding: 12px 24px; background: #1d2330; color: #fff; display: flex; gap: 18px;
         align-items: center; }
header a { color: #aeb6c6; } header h1 { font-size: 18px; margin: 0; }
form { display: flex; gap: 6px; } input { font: inherit; padding: 3px 6px; width: 12em; }
main { padding: 16px 24px; display: grid; gap: 16px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: #6b7383; margin: 0 0 8px; }
table { border-collapse: collapse; } td, th { text-align: left; padding: 3px 10px 3px 0; }
th { color: #6b7383; font-weight: 500; } .muted { color: #6b7383; }
svg text { font-size: 11px; fill: #6b7383; }
"""


def page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{STYLE}</style></head><body><header>"
            "<h1><a href='/' style='color:#fff;text-decoration:none'>alert-classifier</a></h1>"
            f"{search_form()}</header><main>{body}</main></body></html>")


def search_form(q: str = "") -> str:
    return ("<form action='/objects' method='get' id='search'>"
            f"<input name='q' placeholder='diaObjectId, or ra dec radius&quot;' value='{html.escape(q)}' "
            "aria-label='object id or cone'><button>find</button></form>")


def class_name(class_id: int) -> str:
    return CLASS_NAMES.get(class_id, str(class_id))


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n)) if span > 0 else 1.0
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _scale(lo: float, hi: float, a: float, b: float):
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    return lambda v: a + (v - lo) * (b - a) / (hi - lo)


def _axes(xs, ys, x_label: str, y_label: str, x_ticks, y_ticks) -> str:
    parts = [f"<line x1='{PAD_L}' y1='{H - PAD_B}' x2='{W - PAD_R}' y2='{H - PAD_B}' stroke='#999'/>",
             f"<line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{H - PAD_B}' stroke='#999'/>"]
    for t in x_ticks:
        parts.append(f"<text x='{xs(t):.1f}' y='{H - PAD_B + 14}' text-anchor='middle'>{t:g}</text>")
    for t in y_ticks:
        parts.append(f"<line x1='{PAD_L}' x2='{W - PAD_R}' y1='{ys(t):.1f}' y2='{ys(t):.1f}' "
                     f"stroke='#eee'/><text x='{PAD_L - 6}' y='{ys(t) + 4:.1f}' "
                     f"text-anchor='end'>{t:g}</text>")
    parts.append(f"<text x='{(PAD_L + W - PAD_R) / 2}' y='{H - 6}' text-anchor='middle'>"
                 f"{html.escape(x_label)}</text>")
    parts.append(f"<text x='14' y='{(PAD_T + H - PAD_B) / 2}' text-anchor='middle' "
                 f"transform='rotate(-90 14 {(PAD_T + H - PAD_B) / 2})'>{html.escape(y_label)}</text>")
    return "".join(parts)


def light_curve_svg(points: Sequence[dict]) -> str:
    """Difference flux (nJy) against MJD, one colour per band, with error bars."""
    if not points:
        return "<p class='muted'>no detections kept for this object</p>"
    t = [p["mjd"] for p in points]
    lo_f = min(p["psfFlux"] - p["psfFluxErr"] for p in points)
    hi_f = max(p["psfFlux"] + p["psfFluxErr"] for p in points)
    xs, ys = _scale(min(t), max(t), PAD_L, W - PAD_R), _scale(lo_f, hi_f, H - PAD_B, PAD_T)
    body = [_axes(xs, ys, "MJD (TAI)", "difference flux (nJy)", _ticks(min(t), max(t)),
                  _ticks(lo_f, hi_f))]
    for p in points:
        x, colour = xs(p["mjd"]), BAND_COLOURS.get(p["band"], "#000")
        body.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{ys(p['psfFlux'] - p['psfFluxErr']):.1f}' "
                    f"y2='{ys(p['psfFlux'] + p['psfFluxErr']):.1f}' stroke='{colour}' stroke-opacity='.5'/>"
                    f"<circle class='pt' data-band='{p['band']}' cx='{x:.1f}' cy='{ys(p['psfFlux']):.1f}' "
                    f"r='3' fill='{colour}'><title>{p['band']} MJD {p['mjd']:.4f}: {p['psfFlux']:.1f} ± "
                    f"{p['psfFluxErr']:.1f} nJy (diaSourceId {p['diaSourceId']})</title></circle>")
    bands = sorted({p["band"] for p in points}, key="ugrizy".index)
    legend = " ".join(f"<span style='color:{BAND_COLOURS[b]}'>● {b} "
                      f"({sum(p['band'] == b for p in points)})</span>" for b in bands)
    return f"<svg id='lightcurve' viewBox='0 0 {W} {H}' width='100%'>{''.join(body)}</svg><div>{legend}</div>"


def probability_svg(classifier: str, rows: Sequence[dict]) -> str:
    """One classifier's class probabilities, alert after alert."""
    judged = [r for r in rows if not r["reason"]]
    if not judged:
        return f"<p class='muted'>{html.escape(classifier)}: every alert declined</p>"
    t = [r["mjd"] for r in judged]
    xs, ys = _scale(min(t), max(t), PAD_L, W - PAD_R), _scale(0.0, 1.0, H - PAD_B, PAD_T)
    body = [_axes(xs, ys, "MJD (TAI) of the alert", "probability", _ticks(min(t), max(t)),
                  [0, 0.25, 0.5, 0.75, 1])]
    class_ids = sorted({c["classId"] for r in judged for c in r["classifications"]})
    legend = []
    for cid in class_ids:
        series = [(r["mjd"], next((c["probability"] for c in r["classifications"]
                                   if c["classId"] == cid), 0.0)) for r in judged]
        colour = CLASS_COLOURS.get(cid, "#555")
        pts = " ".join(f"{xs(x):.1f},{ys(y):.1f}" for x, y in series)
        body.append(f"<polyline class='prob' data-class='{cid}' fill='none' stroke='{colour}' "
                    f"stroke-width='2' points='{pts}'/>")
        body += [f"<circle cx='{xs(x):.1f}' cy='{ys(y):.1f}' r='2.5' fill='{colour}'/>" for x, y in series]
        legend.append(f"<span style='color:{colour}'>● {html.escape(class_name(cid))}</span>")
    return (f"<svg class='probabilities' data-classifier='{html.escape(classifier)}' "
            f"viewBox='0 0 {W} {H}' width='100%'>{''.join(body)}</svg><div>{' '.join(legend)}</div>")


def _latest_table(latest: dict[str, dict]) -> str:
    rows = []
    for classifier, r in sorted(latest.items()):
        if r["reason"]:
            verdict = f"<span class='muted'>declined: {html.escape(r['reason'])}</span>"
        else:
            best = sorted(r["classifications"], key=lambda c: -c["probability"])[:3]
            verdict = ", ".join(f"{html.escape(class_name(c['classId']))} {c['probability']:.3f}"
                                for c in best)
        rows.append(f"<tr class='latest' data-classifier='{html.escape(classifier)}'>"
                    f"<td>{html.escape(classifier)} {html.escape(r['version'])}</td><td>{verdict}</td>"
                    f"<td class='muted'>MJD {r['mjd']:.4f}</td></tr>")
    return "<table id='latest'>" + "".join(rows) + "</table>"


def _anomaly_line(scores: Sequence[dict]) -> str:
    """The latest anomaly score and the object's highest (scores: oldest first)."""
    scored = [s for s in scores if s["score"] is not None]
    if not scored:
        why = f": {html.escape(scores[-1]['reason'])}" if scores and scores[-1]["reason"] else ""
        return f"<p id='anomaly' class='muted'>anomaly score: none{why}</p>" if scores else ""
    latest, best = scored[-1], max(s["score"] for s in scored)
    return (f"<p id='anomaly' data-score='{latest['score']:.6f}'>anomaly score {latest['score']:.4f} "
            f"(the population's top {100 * (1 - latest['score']):.2g}%; highest {best:.4f}) · "
            f"{html.escape(latest['classifier'])} {html.escape(latest['version'])} · "
            "<a href='/v1/anomalies'>top anomalies (JSON)</a></p>")


def object_page(object_id: int, history: Sequence[dict], points: Sequence[dict], truncated: bool,
                anomaly: Sequence[dict] = ()) -> str:
    """The explorer page of one object: position, latest classes and anomaly score, light curve,
    probabilities over time."""
    latest: dict[str, dict] = {}
    for r in history:  # oldest first: the last wins
        latest[r["classifier"]] = r
    any_row = history[-1] if history else None
    alerts = len({r["dia_source_id"] for r in history})
    position = (f"RA {any_row['ra']:.6f}°, Dec {any_row['dec']:+.6f}° · {alerts} alerts classified"
                if any_row else "no classifications stored")
    oid = str(object_id)  # as text, exact
    links = (f"<a href='/v1/objects/{oid}'>classifications (JSON)</a> · "
             f"<a href='/v1/objects/{oid}/lightcurve'>light curve (JSON)</a> · "
             f"<a href='/v1/objects/{oid}/lightcurve?format=votable'>VOTable</a> · "
             f"<a href='/v1/objects/{oid}/lightcurve?format=parquet'>Parquet</a>")
    by_classifier: dict[str, list[dict]] = {}
    for r in history:
        by_classifier.setdefault(r["classifier"], []).append(r)
    more = "<p class='muted'>showing the first 10,000 detections</p>" if truncated else ""
    body = (f"<section><h2>diaObjectId <span id='object-id'>{oid}</span></h2><p>{position}</p>"
            f"<p>{links}</p>{_latest_table(latest)}{_anomaly_line(anomaly)}</section>"
            f"<section><h2>Light curve ({len(points)} detections kept)</h2>{light_curve_svg(points)}"
            f"{more}</section>"
            + "".join(f"<section><h2>{html.escape(c)}: probabilities alert after alert</h2>"
                      f"{probability_svg(c, rows)}</section>" for c, rows in sorted(by_classifier.items())))
    return page(f"diaObject {oid}", body)


def object_list_page(title: str, objects: Sequence[tuple[int, dict[str, dict]]], query: str = "") -> str:
    """Objects with their latest class per classifier (search results, notable objects)."""
    if not objects:
        return page(title, f"<section><h2>{html.escape(title)}</h2>"
                           "<p class='muted'>nothing found</p></section>")
    rows = []
    for oid, latest in objects:
        cells = []
        for classifier, r in sorted(latest.items()):
            top = "declined" if r["reason"] else f"{class_name(r['top_class'])} {r['top_probability']:.2f}"
            cells.append(f"{html.escape(classifier)}: {html.escape(top)}")
        any_row = next(iter(latest.values()))
        rows.append(f"<tr class='hit'><td><a href='/objects/{oid}'>{oid}</a></td>"
                    f"<td>{any_row['ra']:.5f}</td><td>{any_row['dec']:+.5f}</td>"
                    f"<td>{' · '.join(cells)}</td></tr>")
    return page(title, f"<section><h2>{html.escape(title)}</h2><table id='hits'><tr><th>diaObjectId</th>"
                       f"<th>RA °</th><th>Dec °</th><th>latest classes</th></tr>{''.join(rows)}</table>"
                       "</section>")
