"""Model batches from a prepared dataset, cached tokens and memory vectors.

A batch (one subject, B trials) holds what :class:`brainnet.models.MemModel` and
:class:`brainnet.models.FactorTopy` read:

* ``local`` / ``global``: dicts layer -> (B, C, k, k) / (B, C) tokens of the trial's image
  (fp16 from the :class:`~brainnet.cache.TokenCache`, cast by the model);
* ``memory`` (B, F, D) float32 and ``memory_valid`` (B, F) bool: the cached vectors of the images
  1..F run slots back (zeros at blank slots), from the prepared ``memory_index``;
* ``behaviour`` (B, 35) and ``memory_behaviour`` (B, F, 35): the behaviour row of the trial and of
  the trial shown k slots back in the same run (zeros when that slot is blank or before the run);
* ``pixels`` (B, 3, S, S) uint8: the trial's image at the backbone's input size when the dataset
  is given ``images`` (:class:`brainnet.models.BackboneInLoop`; ``local`` / ``global`` are then left
  out), and ``t1_pixels`` the image one slot back (zeros if blank) when ``images.t1_size`` is set;
* ``fmri`` (B, V) float32 targets, ``trial`` (B,) trial rows, ``image`` (B,) image rows,
  ``subject`` (str); ``teacher`` (B, V) when the dataset has teacher predictions (distillation).

Items are fetched a whole batch at a time (``__getitems__``): a few vectorised gathers, no per-trial work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from brainnet.data.layout import N_BEHAVIOUR, split_codes, subject_name
from brainnet.data.prep.tables import memory_index
from brainnet.data.prepared import PreparedDataset


def trial_memory_index(trials: Mapping[str, np.ndarray], n_frames: int = 33) -> np.ndarray:
    """Trial rows of the ``n_frames`` run slots ending at each trial.

    Parameters
    ----------
    trials : the columns of ``trials.npz`` (``session``, ``run``, ``slot``), each (n_trials,)
    n_frames : columns (k = 0 .. n_frames - 1)

    Returns
    -------
    int64 array of shape (n_trials, n_frames): column k = row of the trial shown k slots before
    (k = 0: the trial itself); -1 for a blank slot or a slot before the run start.
    """
    for key in ("session", "run", "slot"):
        if key not in trials:
            raise ValueError(f"trials table lacks the column {key!r}")
    slot = np.asarray(trials["slot"], np.int64)
    n = slot.size
    if n == 0:
        return np.zeros((0, n_frames), np.int64)
    rows = np.arange(n, dtype=np.int64)
    return memory_index(trials["session"], trials["run"], slot, rows, int(slot.max()) + 1,
                        n_frames).astype(np.int64)


@dataclass
class FeatureSet:
    """Cached inputs shared by every subject of a prepared dataset, indexed by image row.

    Attributes
    ----------
    local : dict layer -> fp16 array (n_images, C, k, k) (current-image maps)
    global_ : dict layer -> fp16 array (n_images, C) (current-image global tokens)
    memory : float32 tensor (n_images, D): one vector per image (memory images)
    backbone : name of the backbone that made the tokens
    weights : that backbone's ``weights_id`` ("open_clip:ViT-B-16/datacomp_l_s1b_b8k", "random:<digest>", ...)
    """

    local: dict
    global_: dict
    memory: torch.Tensor
    backbone: str = ""
    weights: str = ""

    def __post_init__(self):
        if list(self.local) != list(self.global_):
            raise ValueError("local and global tokens must have the same layers")
        n = {a.shape[0] for a in (*self.local.values(), *self.global_.values())} | {self.memory.shape[0]}
        if len(n) != 1:
            raise ValueError(f"all feature arrays must have one row per image, got row counts {sorted(n)}")

    @property
    def n_images(self) -> int:
        return int(self.memory.shape[0])

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.local)

    @property
    def in_channels(self) -> tuple[int, ...]:
        return tuple(int(a.shape[1]) for a in self.local.values())

    @property
    def memory_dim(self) -> int:
        return int(self.memory.shape[1])

    def tokens(self, image_rows: np.ndarray) -> tuple[dict, dict]:
        """(local, global) dicts of the images: layer -> (b, C, k, k) / (b, C) fp16 tensors."""
        rows = np.asarray(image_rows, np.int64)
        return ({n: torch.from_numpy(np.take(a, rows, axis=0)) for n, a in self.local.items()},
                {n: torch.from_numpy(np.take(a, rows, axis=0)) for n, a in self.global_.items()})


class ImagePixels:
    """Images of a prepared dataset resized for a backbone, fetched by image row.

    Parameters
    ----------
    images : uint8 array (n_images, H, W, 3) (e.g. the memmap of ``images/images.npy``)
    size : the backbone's input side; images are resized as the token cache resizes them
    t1_size : None, or a T-1 backbone's input side (batches then carry ``t1_pixels``, see above)

    ``pixels(rows, size=None)`` -> uint8 tensor (b, 3, size, size) (default ``self.size``).
    """

    def __init__(self, images: np.ndarray, size: int, t1_size: int | None = None):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (n_images, H, W, 3), got {images.shape}")
        self.images, self.size, self.t1_size = images, int(size), None if t1_size is None else int(t1_size)

    @classmethod
    def load(cls, root: str | Path | PreparedDataset, size: int, t1_size: int | None = None) -> ImagePixels:
        return cls(PreparedDataset.open(root).images, size, t1_size)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __call__(self, rows: np.ndarray, size: int | None = None) -> torch.Tensor:
        from brainnet.cache import load_resized

        return torch.stack([load_resized(self.images[int(r)], size or self.size) for r in rows])


def pixels_for(model: torch.nn.Module, root: str | Path) -> ImagePixels | None:
    """The images a model with its backbone in the loop reads (None for models on cached tokens)."""
    from brainnet.models.in_loop import BackboneInLoop

    if isinstance(model, BackboneInLoop):
        return ImagePixels.load(root, *model.input_sizes)
    return None


@dataclass
class SubjectTrials:
    """One subject's trial-level arrays (fMRI stays a read-only memmap).

    Attributes
    ----------
    fmri : float16 memmap (n_trials, V)
    image : int64 (n_trials,) image row of each trial
    memory_index : int64 (n_trials, 33) image rows k slots back
    trial_memory : int64 (n_trials, 33) trial rows k slots back
    behaviour : float32 (n_trials, 35)
    split : int8 (n_trials,)
    """

    name: str
    fmri: np.ndarray
    image: np.ndarray
    memory_index: np.ndarray
    trial_memory: np.ndarray
    behaviour: np.ndarray
    split: np.ndarray

    @classmethod
    def load(cls, root: str | Path | PreparedDataset, subject: int | str) -> SubjectTrials:
        """Without trial order (a dataset of the Algonauts release alone, one row per image) no slot
        before a row (``trial_memory[:, 1:]`` = -1); without behaviour, zeros (an image-only model's
        inputs; :func:`brainnet.training.run_setup.check_inputs` refuses models that read them)."""
        data = PreparedDataset.open(root)
        subj = data.subject(subject)
        n = subj.n_trials
        trial_memory = (trial_memory_index(subj.trials, 33) if data.has("trial_order")
                        else np.where(np.arange(33) == 0, np.arange(n)[:, None], -1))
        behaviour = subj.behaviour if data.has("behaviour") else np.zeros((n, N_BEHAVIOUR), np.float32)
        return cls(name=subj.name, fmri=subj.fmri, image=subj.image,
                   memory_index=np.asarray(subj.memory_index, np.int64), trial_memory=trial_memory,
                   behaviour=np.asarray(behaviour, np.float32), split=subj.split)

    @property
    def n_vertices(self) -> int:
        return int(self.fmri.shape[1])


class EncodingDataset(Dataset):
    """Trials of some subjects and split(s), served as whole model batches.

    Parameters
    ----------
    root : prepared dataset directory, or an open :class:`~brainnet.data.PreparedDataset`
    subjects : subjects to include (``"subj01"`` or 1)
    split : split name(s) (``train``, ``val``, ``test``, ``predict``) or ``"all"``
    features : :class:`FeatureSet` holding every image the trials need
    n_frames : memory frames per trial (1..32)
    teacher : optional mapping subject -> array (n_trials, V) of teacher predictions over the
        subject's full trial table (distillation); adds ``batch["teacher"]``
    trial_filter : optional mapping subject -> bool array (n_trials,): keep only these trials
    subject_trials : optional already-loaded :class:`SubjectTrials` (reused across datasets)
    images : optional :class:`ImagePixels`; batches then carry ``pixels`` instead of the cached
        ``local`` / ``global`` tokens (backbone in the loop)

    ``dataset[i]`` gives a batch of one trial; a DataLoader with :class:`SubjectBatchSampler`
    (``batch_size=None`` semantics handled by :func:`make_loader`) gives batches of one subject.
    """

    def __init__(self, root, subjects: Sequence, split, features: FeatureSet, n_frames: int = 32,
                 teacher: Mapping[str, np.ndarray] | None = None,
                 trial_filter: Mapping[str, np.ndarray] | None = None,
                 subject_trials: Mapping[str, SubjectTrials] | None = None,
                 images: ImagePixels | None = None):
        if not 1 <= n_frames <= 32:
            raise ValueError(f"n_frames must be in 1..32, got {n_frames}")
        if not subjects:
            raise ValueError("give at least one subject")
        self.prepared = PreparedDataset.open(root)
        self.root = self.prepared.root
        self.features = features
        self.images = images
        self.n_frames = int(n_frames)
        codes = split_codes(split)
        self.subjects = [subject_name(s) for s in subjects]
        loaded = dict(subject_trials or {})
        self.data: dict[str, SubjectTrials] = {}
        sub_idx, rows = [], []
        for k, s in enumerate(self.subjects):
            self.data[s] = st = loaded.get(s) or SubjectTrials.load(self.prepared, s)
            keep = np.isin(st.split, codes)
            if trial_filter is not None and s in trial_filter:
                keep &= np.asarray(trial_filter[s], bool)
            rows.append(np.flatnonzero(keep))
            sub_idx.append(np.full(rows[-1].size, k, np.int64))
        self.subject_index = np.concatenate(sub_idx)
        self.trials = np.concatenate(rows)
        self.teacher = None
        if teacher is not None:
            self.teacher = {}
            for s in self.subjects:
                if s not in teacher:
                    raise ValueError(f"teacher predictions lack subject {s}")
                arr, st = np.asarray(teacher[s]), self.data[s]
                if arr.shape != (st.image.size, st.n_vertices):
                    raise ValueError(f"teacher[{s}] must be (n_trials, V) = {(st.image.size, st.n_vertices)}, "
                                     f"got {arr.shape}")
                self.teacher[s] = arr
        self._memory = torch.cat([features.memory, features.memory.new_zeros(1, features.memory_dim)]).float()
        max_image = max(int(st.image.max(initial=-1)) for st in self.data.values())
        if max_image >= features.n_images:
            raise ValueError(f"features hold {features.n_images} images but trials use image row {max_image}")
        if images is not None and len(images) != features.n_images:
            raise ValueError(f"images hold {len(images)} rows but the features {features.n_images}")

    def __len__(self) -> int:
        return int(self.trials.size)

    def groups(self) -> dict[str, np.ndarray]:
        """Dataset positions of each subject's trials."""
        return {s: np.flatnonzero(self.subject_index == k) for k, s in enumerate(self.subjects)}

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} trials")
        return self.__getitems__([i % len(self)])

    def __getitems__(self, indices: Sequence[int]) -> dict:
        """A batch of the given dataset positions (all of one subject)."""
        idx = np.asarray(indices, np.int64)
        subj = np.unique(self.subject_index[idx])
        if subj.size != 1:
            raise ValueError("a batch must hold trials of one subject; use SubjectBatchSampler")
        s = self.subjects[int(subj[0])]
        st = self.data[s]
        rows = self.trials[idx]
        f = self.n_frames
        mem_rows = st.memory_index[rows, 1:f + 1]
        valid = mem_rows >= 0
        memory = self._memory[torch.from_numpy(np.where(valid, mem_rows, -1))]  # blank slots: the zero last row
        trial_rows = st.trial_memory[rows, 1:f + 1]
        tvalid = trial_rows >= 0
        mem_beh = st.behaviour[np.maximum(trial_rows, 0)] * tvalid[..., None]
        order = np.argsort(rows, kind="stable")  # memmap reads in ascending order
        fmri = np.empty((rows.size, st.n_vertices), np.float32)
        fmri[order] = st.fmri[rows[order]]
        batch = {
            "subject": s,
            "memory": memory,
            "memory_valid": torch.from_numpy(valid),
            "behaviour": torch.from_numpy(st.behaviour[rows]),
            "memory_behaviour": torch.from_numpy(np.ascontiguousarray(mem_beh, np.float32)),
            "fmri": torch.from_numpy(fmri),
            "trial": torch.from_numpy(rows.copy()),
            "image": torch.from_numpy(st.image[rows]),
        }
        if self.images is None:
            batch["local"], batch["global"] = self.features.tokens(st.image[rows])
        else:
            batch["pixels"] = self.images(st.image[rows])
            if self.images.t1_size is not None:  # blank slots: zeros
                batch["t1_pixels"] = (self.images(np.maximum(mem_rows[:, 0], 0), self.images.t1_size)
                                      * torch.from_numpy(valid[:, :1, None, None]))
        if self.teacher is not None:
            batch["teacher"] = torch.from_numpy(np.asarray(self.teacher[s][rows], np.float32))
        return batch


class SubjectBatchSampler(Sampler):
    """Batches of dataset positions, each from one subject.

    Parameters
    ----------
    groups : mapping subject -> positions (from :meth:`EncodingDataset.groups`)
    batch_size : int
    shuffle : shuffle within subjects and the order of batches (seeded by ``seed`` + epoch)
    drop_last : drop each subject's last incomplete batch
    seed : int
    rank, world_size : shard the batches over DDP processes (rank r takes batches r, r + world_size, ...)
    even : every rank gets the same count (the last ``len % world_size`` batches are left out, as
        training needs); False: every batch goes to exactly one rank, counts may differ by one (validation:
        no trial is left out or scored twice, nothing is padded)
    """

    def __init__(self, groups: Mapping[str, np.ndarray], batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, even: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got {rank} / {world_size}")
        self.groups = {k: np.asarray(v, np.int64) for k, v in groups.items()}
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.even = bool(even)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for pos in self.groups.values():
            pos = rng.permutation(pos) if self.shuffle else pos
            n_full = pos.size // self.batch_size
            for b in range(n_full):
                batches.append(pos[b * self.batch_size:(b + 1) * self.batch_size])
            if not self.drop_last and pos.size % self.batch_size:
                batches.append(pos[n_full * self.batch_size:])
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        batches = self._all_batches()
        mine = batches[self.rank::self.world_size][:len(self)]
        for b in mine:
            yield b.tolist()

    def n_batches(self) -> int:
        """Batches of all ranks together."""
        n = 0
        for pos in self.groups.values():
            n += pos.size // self.batch_size if self.drop_last else math.ceil(pos.size / self.batch_size)
        return n

    def __len__(self) -> int:
        n = self.n_batches()
        if self.even:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))


def _identity(batch):
    return batch


def make_loader(dataset: EncodingDataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int = 0, even: bool = True,
                pin_memory: bool = False):
    """DataLoader of one-subject batches (see :class:`SubjectBatchSampler`), assembled by ``num_workers``
    processes (kept across epochs), in page-locked memory with ``pin_memory`` (asynchronous copies to a GPU)."""
    sampler = SubjectBatchSampler(dataset.groups(), batch_size, shuffle, drop_last, seed, rank, world_size, even)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=_identity,
                                       num_workers=num_workers, pin_memory=pin_memory,
                                       persistent_workers=num_workers > 0)


def subject_vertices(root: str | Path | PreparedDataset, subjects: Sequence) -> tuple[dict, dict]:
    """Sphere coordinates (V, 3) and hemispheres (V,) of each subject's selected vertices."""
    data = PreparedDataset.open(root)
    coords, hemi = {}, {}
    for s in subjects:
        subj = data.subject(s)
        coords[subj.name] = np.asarray(subj.vertices["sphere"], np.float32)
        hemi[subj.name] = np.asarray(subj.hemi, np.int64)
    return coords, hemi
