"""One subject's surface betas of one hemisphere: session files, ncsnr and Algonauts training fMRI.

:func:`write_hemisphere` streams the sessions: each session's betas (n_vertices x 750) are drawn,
written and folded into the subject's accumulators, which live in scratch files
(:mod:`brainnet.data.mini.scratch`), so the memory used follows one session, not the subject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TRIALS_PER_SESSION, MiniNSDConfig
from .cortex import Cortex
from .response import B2_EXTRA_NOISE, ImageMeans, RepeatSums, session_betas, vertex_sigmas, visual_drive, zscore_session
from .scratch import RowStore, index_blocks
from .writers import write_mgh, write_npy_blocks


@dataclass(frozen=True)
class SubjectTrials:
    """One subject's stimulus trials (time order, n_trials = n_sessions x 750) as the betas need them.

    Attributes:
        n_sessions: sessions; held_from: first held-out session (0-based).
        trial_ids: int [n_trials] pool id of each trial's image.
        memory, answer: float [n_trials] memory and answer drives.
        rep3_row: int [n_trials] row of the trial's image among the n_rep3 images shown exactly 3 times
            (ascending ids; -1: other images).
        train_ids: int [n_train] ascending pool ids of the training images (shown before ``held_from``);
            test_ids: the other images (shown only in the held-out sessions).
        train_row: int [n_trials] row of the trial's image in ``train_ids`` (-1: test image).
    """

    n_sessions: int
    held_from: int
    trial_ids: np.ndarray
    memory: np.ndarray
    answer: np.ndarray
    rep3_row: np.ndarray
    n_rep3: int
    train_ids: np.ndarray
    test_ids: np.ndarray
    train_row: np.ndarray

    @classmethod
    def build(cls, trial_ids: np.ndarray, memory: np.ndarray, answer: np.ndarray, n_sessions: int,
              held_from: int) -> SubjectTrials:
        """Derive the image rows from the pool ids of the trials (int [n_sessions x 750], time order)."""
        uniq, inv, counts = np.unique(trial_ids, return_inverse=True, return_counts=True)
        session_of = np.repeat(np.arange(n_sessions), TRIALS_PER_SESSION)
        in_train = np.zeros(len(uniq), dtype=bool)
        np.logical_or.at(in_train, inv, session_of < held_from)
        rep3 = counts == 3
        return cls(n_sessions=n_sessions, held_from=held_from, trial_ids=trial_ids, memory=memory, answer=answer,
                   rep3_row=np.where(rep3, np.cumsum(rep3) - 1, -1)[inv], n_rep3=int(rep3.sum()),
                   train_ids=uniq[in_train], test_ids=uniq[~in_train],
                   train_row=np.where(in_train, np.cumsum(in_train) - 1, -1)[inv])

    @property
    def n_train(self) -> int:
        return len(self.train_ids)


@dataclass(frozen=True)
class HemisphereBetas:
    """What :func:`write_hemisphere` planted and measured.

    Attributes:
        sig: :func:`brainnet.data.mini.response.vertex_sigmas` of the hemisphere (float32 [V] arrays).
        nan_vertices: int64 [n] vertices whose betas are NaN.
        challenge: bool [V], the subject's challenge mask (the planted one without NaN vertices).
        ncsnr: float32 [V] ncsnr written for each beta version (``cfg.beta_versions`` order).
    """

    sig: dict
    nan_vertices: np.ndarray
    challenge: np.ndarray
    ncsnr: tuple[np.ndarray, ...]


def write_hemisphere(cfg: MiniNSDConfig, s: int, h_i: int, hemi: str, cx: Cortex, n_vertices: int,
                     energy: np.ndarray, cats: np.ndarray, trials: SubjectTrials, sub_factor: float,
                     beta_root: Path, fmri_path: Path, scratch: Path, rng_of: Callable, progress: Callable
                     ) -> HemisphereBetas:
    """Write subject ``s``'s betas of hemisphere ``hemi`` (index ``h_i``) for every beta version, their
    ncsnr, and the Algonauts training fMRI (float32 [n_train, n_challenge]) at ``fmri_path``.

    Args:
        cx: the planted hemisphere; n_vertices: its mesh's vertex count V.
        energy, cats: (n_pool, G, G) / (n_pool, 4, G, G) feature maps of the pool images.
        beta_root: ``.../subjXX/fsaverage``, holding one folder per beta version.
        scratch: an existing folder for the accumulators' scratch files (emptied again on return).
        rng_of: ``rng_of(*keys)`` -> the generator's seeded ``np.random.Generator``.
        progress: ``progress(iterable, desc=..., leave=...)`` -> iterable (e.g. a tqdm bar).
    """
    V = n_vertices
    hrng = rng_of(6, s, h_i)
    sig = vertex_sigmas(cx, cfg.ncsnr_range, cfg.noise_level, sub_factor)
    gain = hrng.uniform(0.8, 2.5, size=V).astype(np.float32)
    n_nan = cfg.n_nan_vertices
    inside, outside = np.flatnonzero(cx.challenge), np.flatnonzero(~cx.challenge)
    nan_v = np.sort(np.concatenate([
        hrng.choice(inside, size=min(len(inside), (n_nan + 1) // 2), replace=False),
        hrng.choice(outside, size=min(len(outside), n_nan // 2), replace=False),
    ])).astype(np.int64)
    sig_v = np.flatnonzero(cx.challenge)
    n_pool = energy.shape[0]
    zvis = RowStore((n_pool, len(sig_v)), np.float32, scratch / "zvis.f32")  # (n_pool, n_sig) visual drive
    for cols in index_blocks(len(sig_v), n_pool):
        zvis.write_cols(cols, visual_drive(energy, cats, cx, sig_v[cols]))
    chal = cx.challenge.copy()
    chal[nan_v] = False
    chal_v = np.flatnonzero(chal)

    versions = cfg.beta_versions
    sums = [RepeatSums(trials.n_rep3, V, scratch / f"repeat_sums_{k}.f32") for k in range(len(versions))]
    means = ImageMeans(trials.n_train, len(chal_v), scratch / "training_sums.f64")
    subj = f"subj{s + 1:02d}"
    for se in progress(range(trials.n_sessions), desc=f"{subj} {hemi} sessions", leave=False):
        tsl = slice(se * TRIALS_PER_SESSION, (se + 1) * TRIALS_PER_SESSION)
        b = session_betas(rng_of(7, s, h_i, se), V, sig_v, zvis.read(trials.trial_ids[tsl]), trials.memory[tsl],
                          trials.answer[tsl], sig, gain, cfg.noise_level)
        b[nan_v] = np.nan
        write_mgh(beta_root / versions[0] / f"{hemi}.betas_session{se + 1:02d}.mgh", b.reshape(V, 1, 1, -1))
        z = zscore_session(b)  # (V, 750)
        sums[0].add(z, trials.rep3_row[tsl])
        if se < trials.held_from:
            means.add(z[chal_v], trials.train_row[tsl])
        del z
        for k, version in enumerate(versions[1:], start=1):  # b2: the same plus extra trial noise
            noise = rng_of(12, s, h_i, se, k).standard_normal(b.shape, dtype=np.float32)
            b2 = b + gain[:, None] * (np.float32(B2_EXTRA_NOISE) * noise)
            del noise
            write_mgh(beta_root / version / f"{hemi}.betas_session{se + 1:02d}.mgh", b2.reshape(V, 1, 1, -1))
            sums[k].add(zscore_session(b2), trials.rep3_row[tsl])
            del b2
    zvis.close()
    ncsnr = tuple(r.ncsnr() for r in sums)
    for version, values in zip(versions, ncsnr):
        write_mgh(beta_root / version / f"{hemi}.ncsnr.mgh", values.reshape(V, 1, 1, 1))
    write_npy_blocks(fmri_path, (trials.n_train, len(chal_v)), np.float32, means.mean_blocks())
    return HemisphereBetas(sig=sig, nan_vertices=nan_v, challenge=chal, ncsnr=ncsnr)
