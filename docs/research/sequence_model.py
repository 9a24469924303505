"""Research: a sequence model (GRU) on the light curve itself, against the supernova model's boosted
trees, on the ZTF BTS training objects' out-of-fold predictions (docs/models.md, "A sequence model on
the light curve itself"). Not part of the service: it needs PyTorch, which the project does not install.

    python3.11 -m venv seq && seq/bin/pip install -c constraints.txt -e '.[train]' torch==2.15.0
    OMP_NUM_THREADS=1 seq/bin/python docs/research/sequence_model.py --data-dir ../shared/data

Stage 1 builds the supernova model's training views (seed 42, as `alert-classifier train` does) and
the trees' 3-fold out-of-fold predictions for the BTS training objects (`_bts_out_of_fold`: the same
folds, templates rebuilt without each fold's objects) and caches them (~5 min). Stage 2 fits the GRU
on the same views with each fold's BTS objects and their copies seen farther left out (~6 min a fold
and 12 epochs on 2 cores). Stage 3 prints both and their blends. The held-out BTS split is never read.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold
from torch import nn

from models.train import train as T
from models.train.metrics import sn_metrics, type_metrics

MAX_POINTS = 96  # the latest points of a view (a year of Rubin detections is fewer for most objects)
N_INPUTS = 12


def views_and_tree_oof(data_dir: Path, seed: int) -> dict:
    ts = T.load_training_set(data_dir, seed)
    sn_train, *_ = T.supernova_views(ts)
    y = T.sn_labels(sn_train.y)
    bts_objects = [c for c in ts.train_c if c.source == "bts"]
    oof, bts, classes = T._bts_out_of_fold(sn_train, y, seed, bts_objects)
    objects = np.array([c.object_id for c in sn_train.curves])
    # the folds _bts_out_of_fold used (same splitter, same seed)
    fold = np.full(len(y), -1)
    splitter = StratifiedGroupKFold(T.CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(bts, y[bts], objects[bts])):
        fold[bts[held]] = k
    fold_of = dict(zip(objects[bts], fold[bts], strict=True))
    parent_fold = np.array([fold_of.get(o.removesuffix(T.farther.SOURCE_SUFFIX), -1) for o in objects])
    return {"curves": [(c.t, c.flux, c.flux_err, c.band) for c in sn_train.curves], "y": y,
            "source": sn_train.source, "kind": sn_train.kind, "objects": objects, "classes": classes,
            "weights": T.sn_weights(y, sn_train.source), "bts": bts, "fold": fold,
            "parent_fold": parent_fold, "tree_oof": oof}


def encode(t: np.ndarray, flux: np.ndarray, err: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Per point: time since the first and before the last point, the gap before it, flux and error
    over the view's largest |flux| (scale-free, as the features are), the point's S/N, its band."""
    order = np.argsort(t, kind="stable")[-MAX_POINTS:]
    t, flux, err, band = t[order], flux[order], err[order], band[order]
    scale = max(float(np.max(np.abs(flux))), 1e-6)
    x = np.zeros((len(t), N_INPUTS), np.float32)
    x[:, 0] = (t - t[0]) / 100.0
    x[:, 1] = (t[-1] - t) / 100.0
    x[1:, 2] = np.log1p(np.diff(t)) / 5.0
    x[:, 3] = flux / scale
    x[:, 4] = np.clip(err / scale, 0, 10)
    x[:, 5] = np.log1p(np.maximum(flux, 0) / np.maximum(err, 1e-6)) / 5.0
    x[np.arange(len(t)), 6 + np.clip(band, 0, 5)] = 1.0
    return x


class GRU(nn.Module):
    def __init__(self, n_out: int, hidden: int) -> None:
        super().__init__()
        self.inp = nn.Linear(N_INPUTS, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, last = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        mask = (torch.arange(out.shape[1])[None, :] < lengths[:, None]).float()[..., None]
        mean = (out * mask).sum(1) / lengths[:, None].float()
        return self.head(torch.cat([last[-1], mean], 1))


class Sequences:
    def __init__(self, curves: list) -> None:
        self.x = [encode(*c) for c in curves]
        self.length = np.array([len(x) for x in self.x])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = np.zeros((len(idx), self.length[idx].max(), N_INPUTS), np.float32)
        for j, i in enumerate(idx):
            out[j, :self.length[i]] = self.x[i]
        return torch.from_numpy(out), torch.from_numpy(self.length[idx].astype(np.int64))

    def batches(self, idx: np.ndarray, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
        """Shuffled (training) batches of similar lengths, or length-sorted ones (prediction)."""
        if rng is None:
            idx = idx[np.argsort(self.length[idx], kind="stable")]
            return [idx[i:i + size] for i in range(0, len(idx), size)]
        idx = idx[rng.permutation(len(idx))]
        chunks = [idx[i:i + size * 50] for i in range(0, len(idx), size * 50)]
        idx = np.concatenate([c[np.argsort(self.length[c], kind="stable")] for c in chunks])
        out = [idx[i:i + size] for i in range(0, len(idx), size)]
        return [out[i] for i in rng.permutation(len(out))]


def fit_predict(seqs: Sequences, target: np.ndarray, weights: np.ndarray, train: np.ndarray,
                predict: np.ndarray, n_classes: int, *, epochs: int, hidden: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = GRU(n_classes, hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(train) / 256))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    w = torch.from_numpy((weights / weights.mean()).astype(np.float32))
    for epoch in range(epochs):
        net.train()
        t0, total = time.monotonic(), 0.0
        for b in seqs.batches(train, 256, rng):
            x, lengths = seqs.batch(b)
            loss = nn.functional.cross_entropy(net(x, lengths), torch.from_numpy(target[b]), reduction="none")
            loss = (loss * w[b]).sum() / w[b].sum()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        took = time.monotonic() - t0
        T.progress(f"  epoch {epoch + 1}/{epochs}: loss {total / len(train):.4f} ({took:.0f} s)")
    net.eval()
    proba = np.zeros((len(seqs.x), n_classes), np.float32)
    with torch.no_grad():
        for b in seqs.batches(predict, 1024, None):
            proba[b] = torch.softmax(net(*seqs.batch(b)), 1).numpy()
    return proba[predict]


def gru_oof(d: dict, *, epochs: int, hidden: int, seed: int) -> np.ndarray:
    seqs = Sequences(d["curves"])
    target = np.searchsorted(d["classes"], d["y"])
    oof = np.zeros((len(d["bts"]), len(d["classes"])), np.float32)
    row = {i: k for k, i in enumerate(d["bts"])}
    for k in range(T.CALIBRATION_FOLDS):
        # the fold's objects and their copies seen farther left out
        train = np.flatnonzero(d["parent_fold"] != k)
        held = np.flatnonzero(d["fold"] == k)
        T.progress(f"fold {k + 1}/{T.CALIBRATION_FOLDS}: {len(train)} training views, "
                   f"{len(held)} held BTS views")
        proba = fit_predict(seqs, target, d["weights"], train, held, len(d["classes"]),
                            epochs=epochs, hidden=hidden, seed=seed + k)
        oof[[row[i] for i in held]] = proba
    return oof


def figures(name: str, oof: np.ndarray, d: dict) -> None:
    bts = d["bts"]
    proba = oof[:, [d["classes"].index(c) for c in T.SN_CLASSES]]
    y, source, objects = d["y"][bts], d["source"][bts], d["objects"][bts]
    early = d["kind"][bts] == "early"
    n_points = np.array([len(d["curves"][i][0]) for i in bts])
    cells = []
    for mask in (~early, early & (n_points == 3), early):
        sn = sn_metrics(proba[mask], y[mask], source[mask])
        types = type_metrics(proba[mask], y[mask], objects[mask])
        recall = {k: v["recall"] for k, v in types["type_per_class"].items()}
        recalls = "/".join(str(recall.get(k)) for k in ("SN II", "SN Ib/c", "SLSN"))
        cells.append(f"AUC {sn.get('ia_vs_cc_auc')} acc {types['type_accuracy']} F1 {types['type_macro_f1']} "
                     f"recall II/Ibc/SLSN {recalls}")
    print(f"{name:>14} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("sequence_model_views.pkl"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.cache.exists():
        d = pickle.loads(args.cache.read_bytes())
    else:
        d = views_and_tree_oof(args.data_dir, seed=42)
        args.cache.write_bytes(pickle.dumps(d, protocol=5))
    gru = gru_oof(d, epochs=args.epochs, hidden=args.hidden, seed=args.seed)
    print("columns: full curves | the 3rd detection | every early view (3rd, 5th, 8th detection)")
    figures("trees", d["tree_oof"], d)
    figures("GRU", gru, d)
    for a in (0.3, 0.5):
        figures(f"mean, GRU {a}", (1 - a) * d["tree_oof"] + a * gru, d)


if __name__ == "__main__":
    main()
