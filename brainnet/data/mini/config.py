"""Configuration of the synthetic NSD / Algonauts trees ("nsd-mini")."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

#: Meshes that :func:`brainnet.data.mini.mesh.load_mesh` can build (vertices per hemisphere).
MESH_VERTICES = {"fsaverage3": 642, "fsaverage4": 2562, "fsaverage5": 10242, "fsaverage6": 40962}

RUNS_PER_SESSION = 12
SLOTS_PER_RUN = 75
TRIALS_PER_SESSION = 750  # 6 runs x 63 + 6 runs x 62
REPEATS = 3


@dataclass(frozen=True)
class MiniNSDConfig:
    """Parameters of a generated nsd-mini dataset.

    Attributes:
        seed: everything is a deterministic function of this seed (and the other fields).
        n_subjects: number of subjects (subj01..).
        n_sessions: sessions per subject; an int (same for all) or a tuple with one entry per
            subject. Every session has 12 runs x 75 slots (750 stimulus trials). The last
            ``n_held_out_sessions`` of each subject are the Algonauts test sessions.
        n_held_out_sessions: sessions held out at the end (3 in NSD).
        image_size: side of the square stimulus images in pixels.
        n_shared_images: images in every subject's list (NSD's shared-1000 analogue).
        n_unused_images: extra ids in the stimulus pool that no subject sees (so the 73k-like id
            space has gaps, as in NSD).
        mesh: "fsaverage3" | "fsaverage4" | "fsaverage5" | "fsaverage6". fsaverage5 is nilearn's
            packaged mesh; 3 and 4 are its nested sub-meshes; 6 is its midpoint subdivision.
        mask_fraction: fraction of each hemisphere's vertices in the nsdgeneral-like mask.
        noise_level: multiplies the trial-noise standard deviation.
        ncsnr_range: (low, high) range of the planted image-locked ncsnr of visual vertices.
        n_nan_vertices: per subject and hemisphere, vertices whose betas are all NaN (half of
            them inside the mask).
        missing_data_run: mark one run of subj01 as MISSINGDATA (response columns NaN).
        feature_grid: grid of the energy / category maps that drive the visual vertices.
        objects_per_image: (min, max) objects per scene.
        volume_shape: (X, Y, Z) of the subject-space func1mm grid (thalamus / MTL ROIs and voxel
            betas, see :mod:`brainnet.data.mini.volume`); None writes no volume files.
        beta_versions: betas folders written (first = ``betas_fithrf_GLMdenoise_RR``, the b3 betas
            the Algonauts files come from; ``betas_fithrf`` = b2, the same plus extra trial noise).
    """

    seed: int = 0
    n_subjects: int = 2
    n_sessions: int | tuple[int, ...] = (6, 5)
    n_held_out_sessions: int = 3
    image_size: int = 64
    n_shared_images: int = 100
    n_unused_images: int = 50
    mesh: str = "fsaverage5"
    mask_fraction: float = 0.12
    noise_level: float = 1.0
    ncsnr_range: tuple[float, float] = (0.2, 1.2)
    n_nan_vertices: int = 4
    missing_data_run: bool = True
    feature_grid: int = 16
    objects_per_image: tuple[int, int] = field(default=(1, 4))
    volume_shape: tuple[int, int, int] | None = (16, 20, 16)
    beta_versions: tuple[str, ...] = ("betas_fithrf_GLMdenoise_RR",)

    def __post_init__(self):
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        sess = self.sessions_per_subject
        if len(sess) != self.n_subjects:
            raise ValueError(
                f"n_sessions has {len(sess)} entries but n_subjects is {self.n_subjects}; "
                "give one entry per subject or a single int"
            )
        if self.n_held_out_sessions < 1:
            raise ValueError(f"n_held_out_sessions must be >= 1, got {self.n_held_out_sessions}")
        if min(sess) <= self.n_held_out_sessions:
            raise ValueError(
                f"every subject needs more sessions ({sess}) than n_held_out_sessions "
                f"({self.n_held_out_sessions}) so that some training sessions remain"
            )
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 0 <= self.n_shared_images <= self.n_images_per_subject:
            raise ValueError(
                f"n_shared_images must be in [0, {self.n_images_per_subject}] "
                f"(images per subject), got {self.n_shared_images}"
            )
        if self.n_unused_images < 0:
            raise ValueError(f"n_unused_images must be >= 0, got {self.n_unused_images}")
        if self.mesh not in MESH_VERTICES:
            raise ValueError(f"mesh must be one of {sorted(MESH_VERTICES)}, got {self.mesh!r}")
        if not 0.01 <= self.mask_fraction <= 0.6:
            raise ValueError(f"mask_fraction must be in [0.01, 0.6], got {self.mask_fraction}")
        if self.noise_level <= 0:
            raise ValueError(f"noise_level must be > 0, got {self.noise_level}")
        lo, hi = self.ncsnr_range
        if not 0 < lo <= hi:
            raise ValueError(f"ncsnr_range must be (low, high) with 0 < low <= high, got {self.ncsnr_range}")
        if self.n_nan_vertices < 0:
            raise ValueError(f"n_nan_vertices must be >= 0, got {self.n_nan_vertices}")
        if self.volume_shape is not None and (len(self.volume_shape) != 3 or min(self.volume_shape) < 12):
            raise ValueError(f"volume_shape must be None or 3 sizes >= 12, got {self.volume_shape}")
        versions = tuple(self.beta_versions)
        if versions not in (("betas_fithrf_GLMdenoise_RR",), ("betas_fithrf_GLMdenoise_RR", "betas_fithrf")):
            raise ValueError("beta_versions must start with 'betas_fithrf_GLMdenoise_RR' and may add 'betas_fithrf', "
                             f"got {self.beta_versions}")
        if self.feature_grid < 2 or self.feature_grid > self.image_size:
            raise ValueError(f"feature_grid must be in [2, image_size], got {self.feature_grid}")

    @property
    def sessions_per_subject(self) -> tuple[int, ...]:
        """Number of sessions of each subject, length n_subjects."""
        if isinstance(self.n_sessions, int):
            return (int(self.n_sessions),) * self.n_subjects
        return tuple(int(s) for s in self.n_sessions)

    @property
    def max_sessions(self) -> int:
        return max(self.sessions_per_subject)

    @property
    def n_trials(self) -> int:
        """Planned stimulus trials (length of masterordering): max_sessions x 750."""
        return self.max_sessions * TRIALS_PER_SESSION

    @property
    def n_images_per_subject(self) -> int:
        """Images in each subject's list (NSD: 10000); each is planned 3 times."""
        return self.n_trials // REPEATS

    @property
    def n_pool_images(self) -> int:
        """Size of the stimulus pool (NSD: 73000): shared + per-subject unique + unused."""
        unique = self.n_images_per_subject - self.n_shared_images
        return self.n_shared_images + self.n_subjects * unique + self.n_unused_images

    @property
    def vertices_per_hemi(self) -> int:
        return MESH_VERTICES[self.mesh]

    @staticmethod
    def preset(name: str, **overrides) -> MiniNSDConfig:
        """A named configuration, optionally with fields overridden.

        * ``"default"``: 2 subjects (6 and 5 sessions), fsaverage5, 64 px images, b3 betas only
          (``beta_versions`` adds b2 at ~1.7x the generation time).
        * ``"tiny"``: for unit tests: 2 subjects x 4 sessions, fsaverage4 (2562 vertices per
          hemisphere, nested in fsaverage5), 32 px images, b3 and b2 betas.
        * ``"algonauts"``: benchmark scale: 1 subject x 40 sessions (10000 images, 30000
          trials), fsaverage6-like mesh (40962 per hemisphere) with a ~49% mask (~40k
          selected vertices), 96 px images. Large: ~10 GB of betas per subject (generation itself
          holds ~1 GB of memory, see :func:`brainnet.data.mini.generate.make_mini_nsd`).
        """
        presets = {
            "default": {},
            "tiny": dict(
                n_subjects=2, n_sessions=4, image_size=32, n_shared_images=40, n_unused_images=10,
                mesh="fsaverage4", n_nan_vertices=2, feature_grid=8,
                beta_versions=("betas_fithrf_GLMdenoise_RR", "betas_fithrf"),
            ),
            "algonauts": dict(
                n_subjects=1, n_sessions=40, image_size=96, n_shared_images=1000, n_unused_images=500,
                mesh="fsaverage6", mask_fraction=0.49,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return replace(MiniNSDConfig(), **{**presets[name], **overrides})


@dataclass(frozen=True)
class MiniNSDPaths:
    """Where :func:`make_mini_nsd` wrote things.

    Attributes:
        root: the output directory.
        nsd: root of the NSD tree (``root/nsd``).
        algonauts: root of the Algonauts tree (``root/algonauts2023``, holding subj01..).
        ground_truth: ``root/ground_truth.npz``.
        ground_truth_json: ``root/ground_truth.json``.
    """

    root: Path
    nsd: Path
    algonauts: Path
    ground_truth: Path
    ground_truth_json: Path

    @classmethod
    def under(cls, root) -> MiniNSDPaths:
        root = Path(root)
        return cls(root, root / "nsd", root / "algonauts2023", root / "ground_truth.npz", root / "ground_truth.json")
