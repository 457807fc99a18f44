"""nsd-mini's subject-space volume: func1mm thalamus / MTL ROIs and voxel betas with planted truth.

Per subject, a small 1 mm grid (``MiniNSDConfig.volume_shape``, one voxel wider in x and one
shorter in z for every second subject) with a diagonal RAS affine centred near scanner
``(0, -18, -6)`` mm. An ellipsoidal "brain" fills ~38% of it; outside it every beta is 0 (as in
NSD). Two bilateral label volumes, written as in NSD to
``nsddata/ppdata/subjXX/func1mm/roi/{thalamus,MTL}.nii.gz``:

* thalamus, labels 1-5 (:data:`THALAMUS_NAMES`): a cylinder along y at x = 40% / 60%, z = 55%,
  cut into 5 slabs along y;
* MTL, labels 1-10 (:data:`MTL_NAMES`): a cylinder along y at x = 22% / 78%, z = 35%, cut into 10
  slabs.

Planted responses (same model and units as the surface, :mod:`brainnet.data.mini.response`):

* LGN voxels are visual (kind 1), pure energy drive (category_mix 0), small receptive fields in
  the contralateral visual field (left LGN sees x >= 0), ncsnr from ``ncsnr_range``;
* hippocampal voxels (group H = Sub, CA1, CA2, CA3, DG, HT) are memory voxels (kind 2) driven by
  the same remembered feature as cortex but through their own lag profile
  (:func:`hippocampus_lag_profile`, peak at k = :data:`HIPPOCAMPUS_PEAK_LAG`, later than cortex's
  k = 6), plus a weak image-locked response;
* every other brain voxel carries noise only (kind 0).

Betas are written per session as 4-D int16 NIfTI holding percent signal change x 300
(``nsddata_betas/ppdata/subjXX/func1mm/<version>/betas_sessionNN.nii.gz``) with ``ncsnr.nii.gz``
(float32, 0 outside the brain) computed by the NSD formula from the written values.
``betas_fithrf`` (b2) = the b3 betas plus extra trial noise (GLMdenoise's gain left out).
"""

from __future__ import annotations

import numpy as np

from brainnet.data.formats.nsd import FUNC1MM_BETA_SCALE, FUNC1MM_ROI_NAMES

from .config import TRIALS_PER_SESSION, MiniNSDConfig
from .cortex import Cortex
from .response import (
    B2_EXTRA_NOISE,
    RepeatSums,
    memory_trace,
    session_betas,
    vertex_sigmas,
    visual_drive,
    zscore_session,
)
from .truth import KIND_MEMORY, KIND_NONE, KIND_VISUAL
from .writers import write_nifti

THALAMUS_NAMES = FUNC1MM_ROI_NAMES["thalamus"]
MTL_NAMES = FUNC1MM_ROI_NAMES["MTL"]
#: MTL labels of the hippocampus (group H: HHHB = Sub..DG, plus HT).
HIPPOCAMPUS = ("Sub", "CA1", "CA2", "CA3", "DG", "HT")
HIPPOCAMPUS_PEAK_LAG = 12
HIPPOCAMPUS_LAG_SD = 3.0
#: (x fraction of each side, z fraction, radius in voxels, y range fraction) of the two cylinders.
_CYLINDERS = {"thalamus": ((0.40, 0.60), 0.55, 2.0, (0.30, 0.70)),
              "MTL": ((0.22, 0.78), 0.35, 2.0, (0.15, 0.85))}


def hippocampus_lag_profile(n_lags: int = 32) -> np.ndarray:
    """Planted hippocampal lag profile, float32 (n_lags + 1,): a Gaussian bump
    ``exp(-(k - 12)^2 / (2 * 3^2))`` for k >= 1, entry 0 = 0; its peak is at k = 12
    (:data:`HIPPOCAMPUS_PEAK_LAG`), later than cortex's k = 6."""
    k = np.arange(n_lags + 1, dtype=np.float64)
    prof = np.exp(-((k - HIPPOCAMPUS_PEAK_LAG) ** 2) / (2 * HIPPOCAMPUS_LAG_SD**2))
    prof[0] = 0.0
    return prof.astype(np.float32)


def subject_grid(cfg: MiniNSDConfig, s: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (X, Y, Z) and float64 [4, 4] voxel -> scanner (mm, RAS) affine of subject ``s`` (0-based)."""
    x, y, z = cfg.volume_shape
    shape = (x + s % 2, y, z - s % 2)
    affine = np.eye(4)
    affine[:3, 3] = -np.asarray(shape, np.float64) / 2 + np.array([0.0, -18.0, -6.0]) + 0.5 * s
    return shape, affine


def plant_volume(shape: tuple[int, int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Brain mask and label volumes of one subject.

    Returns bool ``brain`` and int16 ``thalamus`` / ``MTL`` arrays of ``shape`` (labels 1-5 / 1-10,
    0 elsewhere; the two never overlap).
    """
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    centre = (np.asarray(shape, np.float64) - 1) / 2
    semi = 0.45 * np.asarray(shape, np.float64)
    brain = (((grid - centre[:, None, None, None]) / semi[:, None, None, None]) ** 2).sum(0) <= 1
    out = {"brain": brain}
    for atlas, names in (("thalamus", THALAMUS_NAMES), ("MTL", MTL_NAMES)):
        xs, zf, radius, (y0, y1) = _CYLINDERS[atlas]
        labels = np.zeros(shape, np.int16)
        jitter = rng.uniform(-0.6, 0.6, size=2)
        for xf in xs:
            cx, cz = xf * (shape[0] - 1) + jitter[0], zf * (shape[2] - 1) + jitter[1]
            inside = (grid[0] - cx) ** 2 + (grid[2] - cz) ** 2 <= radius**2
            yf = grid[1] / (shape[1] - 1)
            inside &= (yf >= y0) & (yf < y1) & brain
            slab = np.minimum(((yf - y0) / (y1 - y0) * len(names)).astype(np.int64), len(names) - 1)
            labels[inside] = slab[inside] + 1
        out[atlas] = labels
    out["MTL"][out["thalamus"] > 0] = 0
    return out


def _voxel_model(vol: dict, affine: np.ndarray, rng: np.random.Generator) -> tuple[Cortex, np.ndarray]:
    """Planted properties of the brain voxels (C order) as a :class:`Cortex`, and their flat indices."""
    flat = np.flatnonzero(vol["brain"].reshape(-1))
    n = flat.size
    thal, mtl = vol["thalamus"].reshape(-1)[flat], vol["MTL"].reshape(-1)[flat]
    lgn = thal == THALAMUS_NAMES.index("LGN") + 1
    hip = np.isin(mtl, [MTL_NAMES.index(h) + 1 for h in HIPPOCAMPUS])
    kind = np.full(n, KIND_NONE, np.int8)
    kind[lgn], kind[hip] = KIND_VISUAL, KIND_MEMORY
    x_mm = (affine @ np.c_[np.stack(np.unravel_index(flat, vol["brain"].shape), 1), np.ones(n)].T)[0]
    side = np.where(x_mm < affine[0, 3] + affine[0, 0] * (vol["brain"].shape[0] - 1) / 2, 1.0, -1.0)
    rf_x = np.where(lgn, side * rng.uniform(0.05, 0.8, n), 0.0).astype(np.float32)
    rf_y = np.where(lgn, rng.uniform(-0.8, 0.8, n), 0.0).astype(np.float32)
    rf_size = np.where(lgn, rng.uniform(0.12, 0.25, n), 1.0).astype(np.float32)
    weights = np.zeros((n, 4), np.float32)
    weights[:, :2] = 0.5  # hippocampus: weak animate (face + body) image response
    cx = Cortex(nsdgeneral=np.zeros(n, bool), challenge=np.zeros(n, bool), hierarchy=np.zeros(n, np.float32),
                rf_x=rf_x, rf_y=rf_y, rf_size=rf_size, kind=kind,
                category_mix=np.where(lgn, 0.0, 1.0).astype(np.float32), category_weights=weights,
                ncsnr_scale=rng.uniform(0.3, 1.0, n).astype(np.float32), labels={})
    return cx, flat


def write_subject_volume(cfg: MiniNSDConfig, s: int, n_sess: int, trial_ids: np.ndarray, slots: np.ndarray,
                         energy: np.ndarray, cats: np.ndarray, memory_feature: np.ndarray, rep3_row: np.ndarray,
                         n_rep3: int, sub_factor: float, paths, truth: dict, rng_of) -> dict:
    """Write one subject's func1mm ROI volumes, betas (every version of ``cfg.beta_versions``) and
    ncsnr; add the subject's volume truth to ``truth``; return measured numbers.

    Args:
        trial_ids: int [n_trials] pool id per trial (time order); slots: int [n_sess, 12, 75].
        rep3_row: int [n_trials] row among the images shown exactly 3 times (-1 otherwise).
        rng_of: ``rng_of(*keys)`` -> the generator's seeded ``np.random.Generator``.
    """
    subj = f"subj{s + 1:02d}"
    shape, affine = subject_grid(cfg, s)
    vol = plant_volume(shape, rng_of(20, s))
    cx, flat = _voxel_model(vol, affine, rng_of(21, s))
    n = flat.size
    roi_dir = paths.nsd / "nsddata" / "ppdata" / subj / "func1mm" / "roi"
    for atlas in ("thalamus", "MTL"):
        write_nifti(roi_dir / f"{atlas}.nii.gz", vol[atlas], affine)
    sig = vertex_sigmas(cx, cfg.ncsnr_range, cfg.noise_level, sub_factor)
    gain = rng_of(22, s).uniform(0.8, 2.5, size=n).astype(np.float32)
    sig_v = np.flatnonzero(cx.kind != KIND_NONE)
    zvis = visual_drive(energy, cats, cx, sig_v)
    profile = hippocampus_lag_profile()
    drive = memory_trace(slots, memory_feature, profile)
    no_answer = np.zeros(n_sess * TRIALS_PER_SESSION)
    sums = {v: RepeatSums(n_rep3, n) for v in cfg.beta_versions}
    betas_root = paths.nsd / "nsddata_betas" / "ppdata" / subj / "func1mm"
    full = np.zeros(shape + (TRIALS_PER_SESSION,), np.int16)
    full_flat = full.reshape(-1, TRIALS_PER_SESSION)
    for se in range(n_sess):
        tsl = slice(se * TRIALS_PER_SESSION, (se + 1) * TRIALS_PER_SESSION)
        b = session_betas(rng_of(23, s, se), n, sig_v, zvis[trial_ids[tsl]], drive[tsl], no_answer[tsl], sig, gain,
                          cfg.noise_level)
        for k, version in enumerate(cfg.beta_versions):
            if k:  # b2: the same session with extra trial noise
                b = b + gain[:, None] * (B2_EXTRA_NOISE * rng_of(24, s, se, k).standard_normal(b.shape, np.float32))
            q = np.clip(np.rint(b * FUNC1MM_BETA_SCALE), -32767, 32767).astype(np.int16)
            full_flat[flat] = q
            write_nifti(betas_root / version / f"betas_session{se + 1:02d}.nii.gz", full, affine, compresslevel=0)
            sums[version].add(zscore_session(q.astype(np.float32) / np.float32(FUNC1MM_BETA_SCALE)), rep3_row[tsl])
    out = {"shape": list(shape), "n_brain_voxels": int(n), "n_thalamus_voxels": int((vol["thalamus"] > 0).sum()),
           "n_MTL_voxels": int((vol["MTL"] > 0).sum()), "n_hippocampus_voxels": int((cx.kind == KIND_MEMORY).sum()),
           "n_LGN_voxels": int((cx.kind == KIND_VISUAL).sum())}

    def as_volume(values, dtype):
        v = np.zeros(int(np.prod(shape)), dtype)
        v[flat] = values
        return v.reshape(shape)

    for k, version in enumerate(cfg.beta_versions):
        ncsnr = sums[version].ncsnr()
        write_nifti(betas_root / version / "ncsnr.nii.gz", as_volume(ncsnr, np.float32), affine)
        truth[f"{subj}_vol_ncsnr_written{'_b2' if k else ''}"] = as_volume(ncsnr, np.float32)
    truth.update({
        f"{subj}_vol_affine": affine, f"{subj}_vol_brain": vol["brain"], f"{subj}_vol_thalamus": vol["thalamus"],
        f"{subj}_vol_MTL": vol["MTL"], f"{subj}_vol_kind": as_volume(cx.kind, np.int8),
        f"{subj}_vol_rf_x": as_volume(cx.rf_x, np.float32), f"{subj}_vol_rf_y": as_volume(cx.rf_y, np.float32),
        f"{subj}_vol_rf_size": as_volume(cx.rf_size, np.float32),
        f"{subj}_vol_sigma_image": as_volume(sig["sigma_image"], np.float32),
        f"{subj}_vol_sigma_memory": as_volume(sig["sigma_memory"], np.float32),
        f"{subj}_vol_ncsnr_planted": as_volume(sig["ncsnr"], np.float32),
        f"{subj}_hippocampus_drive": drive.astype(np.float32),
    })
    return out
