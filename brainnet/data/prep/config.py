"""Typed parameters of :func:`brainnet.data.prepare`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from brainnet.data.formats.algonauts import ROI_CLASSES
from brainnet.data.prep.spaces import SPACES, beta_folder


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that decides the content of a prepared dataset.

    Attributes:
        subjects: subject names (``"subj01"``) or numbers; None = every subject folder of the
            Algonauts tree.
        space: the units (:data:`brainnet.data.prep.spaces.SPACES`): ``"fsaverage"`` (selected
            vertices), ``"full_fsaverage"`` (every vertex), ``"hip_func1mm"`` (thalamus + MTL voxels)
            or ``"fship"`` (the fsaverage selection followed by those voxels).
        beta_version: betas folder (``betas_fithrf_GLMdenoise_RR``, ``betas_fithrf``, ``betas_assumehrf``)
            or its alias ``b3`` / ``b2`` / ``b1``; stored as the folder name.
        nc_threshold: vertex selection of ``fsaverage`` / ``fship``: None = the Algonauts
            all-vertices mask only; a float in [0, 1] adds every vertex with noise ceiling
            (fraction) >= it; ``"auto"`` adds the highest-NC vertices while their mean NC stays >=
            the mean NC of the challenge vertices; ``"all"`` takes every vertex. ``full_fsaverage``
            takes every vertex (None or "all" only); ``hip_func1mm`` has no vertices (None only).
        image_size: side S of the stored square images (PIL bicubic resize).
        image_source: ``"hdf5"`` (NSD stimulus file), ``"png"`` (Algonauts images) or ``"auto"``
            (hdf5 when present, else png).
        split_seed: seed of the image shuffle for the train / val / test split.
        split_fractions: (train, val, test) fractions of the unique images of the non-held-out
            sessions; they must sum to 1.
        n_heldout_sessions: the last sessions of each subject that form the ``predict`` split.
        algonauts_rois: Algonauts ROI classes copied into ``rois.npz``.
        fsaverage_atlases: fsaverage label atlases copied into ``rois.npz``.
        image_chunk: images resized per resumable chunk.
    """

    subjects: tuple[str, ...] | None = None
    space: str = "fsaverage"
    beta_version: str = "betas_fithrf_GLMdenoise_RR"
    nc_threshold: float | str | None = None
    image_size: int = 224
    image_source: str = "auto"
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.94, 0.04, 0.02)
    n_heldout_sessions: int = 3
    algonauts_rois: tuple[str, ...] = tuple(c for c in ROI_CLASSES if c != "streams")
    fsaverage_atlases: tuple[str, ...] = ("nsdgeneral", "streams")
    image_chunk: int = 256

    def __post_init__(self):
        from brainnet.data.layout import subject_name

        if self.subjects is not None:
            if isinstance(self.subjects, (str, int)):
                object.__setattr__(self, "subjects", (self.subjects,))
            object.__setattr__(self, "subjects", tuple(sorted({subject_name(s) for s in self.subjects})))
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        object.__setattr__(self, "beta_version", beta_folder(self.beta_version))
        nc = self.nc_threshold
        if not (nc is None or nc in ("auto", "all") or (isinstance(nc, (int, float)) and 0.0 <= float(nc) <= 1.0)):
            raise ValueError(f"nc_threshold must be None, 'auto', 'all' or a fraction in [0, 1], got {nc!r}")
        full, voxels_only = self.space == "full_fsaverage", self.space == "hip_func1mm"
        if (full and nc not in (None, "all")) or (voxels_only and nc is not None):
            raise ValueError(f"nc_threshold {nc!r} does not apply to space {self.space!r} "
                             "(full_fsaverage takes every vertex, hip_func1mm has none)")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {self.image_size!r}")
        if self.image_source not in ("auto", "hdf5", "png"):
            raise ValueError(f"image_source must be 'auto', 'hdf5' or 'png', got {self.image_source!r}")
        fractions = tuple(float(f) for f in self.split_fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(
                f"split_fractions must be 3 non-negative numbers summing to 1, got {self.split_fractions!r}")
        object.__setattr__(self, "split_fractions", fractions)
        if not isinstance(self.n_heldout_sessions, int) or self.n_heldout_sessions < 0:
            raise ValueError(f"n_heldout_sessions must be an int >= 0, got {self.n_heldout_sessions!r}")
        unknown = set(self.algonauts_rois) - set(ROI_CLASSES)
        if unknown:
            raise ValueError(f"unknown Algonauts ROI classes {sorted(unknown)}; choose from {ROI_CLASSES}")
        clash = set(self.algonauts_rois) & set(self.fsaverage_atlases)
        if clash:
            raise ValueError(f"atlas names {sorted(clash)} asked from both Algonauts and fsaverage labels")
        if not isinstance(self.image_chunk, int) or self.image_chunk < 1:
            raise ValueError(f"image_chunk must be a positive int, got {self.image_chunk!r}")

    def to_json(self) -> dict[str, Any]:
        """The parameters as JSON-friendly values (recorded in the manifest)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out
