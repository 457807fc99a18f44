"""Partitions of each subject's vertices into groups, one ensemble member per group.

Three kinds, as the Memory Encoding Model's ROI-model ensemble:

* :func:`atlas_groups`: 9 anatomical groups from the prepared dataset's ``streams`` atlas and
  challenge mask: "RSC" (challenge-mask vertices in no stream: on NSD these are the retrosplenial
  vertices the challenge mask adds to nsdgeneral), the seven streams ("early", "mid-ventral",
  "mid-lateral", "mid-parietal", "ventral", "lateral", "parietal"), and "rest" (vertices outside the
  challenge mask, e.g. those added by a noise-ceiling threshold). On nsd-mini the streams atlas is
  written with the same seven names; "rest" is empty when every vertex is in the challenge mask.
* :func:`model_clusters`: groups of vertices whose trained readout weights point the same way
  (cosine k-means to 100 clusters, then Ward linkage of the cluster centres cut into k).
* :func:`random_partitions`: n random splits into k groups of (nearly) equal size.

Every partition assigns each vertex of each subject to exactly one group (label >= 0); a group may
be empty for a subject. Saved as ``.npz`` (one int64 array (V_s,) per subject, plus the names), the
file a :class:`~brainnet.models.MemEnsembleConfig` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainnet.data.prepared import PreparedDataset

#: The anatomical groups of :func:`atlas_groups`, in label order.
ATLAS_GROUPS: tuple[str, ...] = ("RSC", "early", "mid-ventral", "mid-lateral", "mid-parietal", "ventral", "lateral",
                                 "parietal", "rest")
#: Cosine k-means clusters made before the Ward linkage of :func:`model_clusters`.
KMEANS_CLUSTERS = 100
_NAMES_KEY = "__group_names__"


@dataclass(frozen=True)
class Partition:
    """Group label per vertex of each subject.

    Attributes
    ----------
    name : short name (file stem, run folder name)
    labels : subject -> int64 (V_s,), each vertex's group in ``0 .. len(group_names) - 1``
    group_names : one name per group
    """

    name: str
    labels: Mapping[str, np.ndarray]
    group_names: tuple[str, ...]

    def __post_init__(self):
        k = len(self.group_names)
        for s, lab in self.labels.items():
            lab = np.asarray(lab)
            if lab.ndim != 1 or (lab.size and (lab.min() < 0 or lab.max() >= k)):
                raise ValueError(f"partition {self.name}: labels of {s} must be (V,) in 0..{k - 1}")

    @property
    def k(self) -> int:
        return len(self.group_names)

    def groups(self) -> tuple[int, ...]:
        """The group ids with at least one vertex in some subject."""
        used = set()
        for lab in self.labels.values():
            used.update(np.unique(lab).tolist())
        return tuple(sorted(int(g) for g in used))

    def sizes(self) -> dict[str, list[int]]:
        """subject -> vertices per group."""
        return {s: np.bincount(lab, minlength=self.k).tolist() for s, lab in self.labels.items()}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **{s: np.asarray(v, np.int64) for s, v in self.labels.items()},
                 **{_NAMES_KEY: np.array(self.group_names)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Partition:
        path = Path(path)
        with np.load(path) as z:
            names = tuple(str(n) for n in z[_NAMES_KEY])
            labels = {s: z[s].astype(np.int64) for s in z.files if s != _NAMES_KEY}
        return cls(path.stem, labels, names)


def subject_vertex_counts(data: str | Path | PreparedDataset, subjects: Sequence[str]) -> dict[str, int]:
    """subject -> V_s of a prepared dataset."""
    ds = PreparedDataset.open(data)
    return {s: int(ds.subject(s).hemi.shape[0]) for s in subjects}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def atlas_groups(data: str | Path | PreparedDataset, subjects: Sequence[str], atlas: str = "streams") -> Partition:
    """The 9 anatomical groups of :data:`ATLAS_GROUPS` from the ``streams`` atlas (see the module docstring)."""
    ds = PreparedDataset.open(data)
    index = {_norm(n): i for i, n in enumerate(ATLAS_GROUPS)}
    labels = {}
    for s in subjects:
        subj = ds.subject(s)
        if atlas not in subj.rois:
            raise ValueError(f"{s} has no {atlas!r} atlas (have {sorted(subj.rois)}); prepare it with that atlas")
        codes, names = subj.rois[atlas]
        lab = np.where(np.asarray(subj.challenge, bool), index["rsc"], index["rest"]).astype(np.int64)
        for code, name in enumerate(names):
            if code == 0:
                continue
            if _norm(name) not in index:
                raise ValueError(f"stream {name!r} of {s} is none of {ATLAS_GROUPS}")
            lab[np.asarray(codes) == code] = index[_norm(name)]
        labels[s] = lab
    return Partition("atlas", labels, ATLAS_GROUPS)


def random_partitions(n_vertices: Mapping[str, int], n: int, k: int, seed: int = 0) -> list[Partition]:
    """``n`` random partitions into ``k`` groups of (nearly) equal size per subject (reproducible from ``seed``)."""
    if n < 1 or k < 1:
        raise ValueError(f"n and k must be >= 1, got {n}, {k}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = {}
        for s, v in n_vertices.items():
            lab = np.empty(v, np.int64)
            for g, chunk in enumerate(np.array_split(rng.permutation(v), k)):
                lab[chunk] = g
            labels[s] = lab
        out.append(Partition(f"random{i + 1}", labels, tuple(f"r{i + 1}_{g + 1}" for g in range(k))))
    return out


def model_clusters(weights: Mapping[str, np.ndarray], k: int, n_kmeans: int = KMEANS_CLUSTERS, seed: int = 0,
                   name: str = "clusters") -> Partition:
    """Groups of vertices by their trained readout weights, pooled over subjects.

    Parameters
    ----------
    weights : subject -> (V_s, D) per-vertex readout weights of a trained whole-brain model
        (:func:`readout_weights`)
    k : groups wanted
    n_kmeans : cosine k-means clusters before the linkage (fewer when there are fewer vertices)

    Each vertex's weight vector is scaled to unit length (so Euclidean k-means is cosine k-means);
    the unit-length k-means centres are joined by Ward linkage and the tree is cut into ``k`` groups
    (fewer only when fewer centres exist); a vertex joins its centre's group.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.cluster import KMeans

    subjects = list(weights)
    w = np.concatenate([np.asarray(weights[s], np.float64) for s in subjects])
    if w.ndim != 2 or w.shape[0] < k:
        raise ValueError(f"need (n >= k={k}, D) weights, got {w.shape}")
    unit = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    n_km = int(min(n_kmeans, w.shape[0]))
    km = KMeans(n_clusters=max(n_km, k), n_init=4, random_state=seed).fit(unit)
    centres = km.cluster_centers_ / np.maximum(np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-12)
    tree = linkage(centres, method="ward")
    cut = fcluster(tree, t=k, criterion="maxclust") - 1
    # groups numbered by size, largest first (a reproducible order)
    order = np.argsort(-np.bincount(cut[km.labels_], minlength=cut.max() + 1), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    lab = rank[cut[km.labels_]].astype(np.int64)
    labels, start = {}, 0
    for s in subjects:
        v = np.asarray(weights[s]).shape[0]
        labels[s] = lab[start:start + v]
        start += v
    return Partition(name, labels, tuple(f"c{g + 1}" for g in range(int(cut.max()) + 1)))


def readout_weights(model) -> dict[str, np.ndarray]:
    """subject -> (V_s, D) per-vertex readout weights of a trained ``mem`` model (or a model in the loop)."""
    inner = getattr(model, "model", model)
    return {s: inner.readouts[s].weight.detach().cpu().numpy() for s in inner.readouts.subjects}
