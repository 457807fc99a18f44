"""Writers of the prepared dataset: small per-subject tables, streamed fMRI, streamed images.

All of them write into a staging folder (``<out>/.prepare-work/stage``) with the layout of the
final dataset. The two big arrays are resumable: the fMRI matrix of a subject is a ``.npy``
``.npy`` filled session by session, each finished session leaving a ``done`` marker; images are
filled in chunks with one marker per chunk. A rerun skips what has a marker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainnet.data import layout as L
from brainnet.data.formats import algonauts as alg
from brainnet.data.formats import nsd
from brainnet.data.io import NpyRowWriter, save_npy, save_npz
from brainnet.data.prep.plan import DatasetPlan, SubjectPlan
from brainnet.data.prep.volume import read_volume_session
from brainnet.data.prep.zscore import SessionScales, session_scales, zscore_rows

#: Called after each committed session with (subject name, 1-based session number).
SessionHook = Callable[[str, int], None]


def write_subject_tables(plan: SubjectPlan, stage: Path) -> None:
    """Write ``trials.npz``, ``memory_index.npy``, ``behaviour.npy``, ``noise_ceiling.npy``,
    ``vertices.npz`` and ``rois.npz`` of one subject into ``stage/<subject>/`` (``plan`` may also be
    an image-level subject plan: behaviour / noise ceiling None are not written)."""
    folder = stage / plan.name
    t = plan.trials
    save_npz(folder / L.TRIALS, {
        "session": t["session"].astype(np.int16), "run": t["run"].astype(np.int16),
        "trial": t["trial"].astype(np.int16), "slot": t["slot"].astype(np.int16),
        "nsd_id": t["nsd_id"].astype(np.int64), "image": t["image"].astype(np.int64),
        "split": t["split"].astype(np.int8),
    })
    save_npy(folder / L.MEMORY_INDEX, plan.memory_index.astype(np.int32))
    if plan.behaviour is not None:
        save_npy(folder / L.BEHAVIOUR, plan.behaviour.astype(np.float32))
    if plan.noise_ceiling is not None:
        save_npy(folder / L.NOISE_CEILING, plan.noise_ceiling.astype(np.float32))
    vertices = {
        "hemi": plan.hemi.astype(np.int8), "index": plan.index.astype(np.int64),
        "sphere": plan.sphere.astype(np.float32), "challenge": plan.challenge.astype(bool),
    }
    if plan.volume is not None:
        vertices.update(volume_affine=plan.volume.affine.astype(np.float64),
                        volume_shape=np.asarray(plan.volume.grid, np.int64))
    save_npz(folder / L.VERTICES, vertices)
    save_npz(folder / L.ROIS, plan.rois)


class _SessionReader:
    """Reads a subject's sessions trial-major into two reused buffers, float32 [T_max, V] each: the caller
    z-scores and writes one session while the next is read into the other."""

    def __init__(self, plan: SubjectPlan):
        self.plan = plan
        longest = max(b - a for a, b in plan.session_rows)
        self.buffers = [np.empty((longest, plan.n_vertices), np.float32) for _ in range(2)]
        self.rows = plan.rows_of_hemi(0), plan.rows_of_hemi(1)

    def read(self, s: int, slot: int) -> np.ndarray:
        """Session ``s`` (0-based) into buffer ``slot``: its betas float32 [T, V]. The two hemispheres' files
        are read at once (the disk stays busy while one file ends and the other begins)."""
        plan, (rows_lh, rows_rh) = self.plan, self.rows
        start, stop = plan.session_rows[s]
        x = self.buffers[slot].reshape(-1)[: (stop - start) * plan.n_vertices].reshape(stop - start, -1)
        n_lh, n_surface = rows_lh.size, plan.n_surface
        if plan.betas[s]:
            lh_path, rh_path = plan.betas[s]
            with ThreadPoolExecutor(1, thread_name_prefix="brainnet-betas-rh") as other:  # both files at once
                rh = other.submit(nsd.read_betas_trials, rh_path, rows_rh, x[:, n_lh:n_surface], plan.mesh_sizes[1])
                try:
                    nsd.read_betas_trials(lh_path, rows_lh, x[:, :n_lh], plan.mesh_sizes[0])
                except BaseException:
                    wait([rh])  # the left hemisphere's error is the one raised
                    raise
                rh.result()
        if plan.volume is not None:
            voxels = read_volume_session(plan.volume, s, np.empty((plan.n_vertices - n_surface, stop - start),
                                                                   np.float32))
            x[:, n_surface:] = voxels.T
        return x


def _sessions(plan: SubjectPlan, todo: Sequence[int],
              helper: Executor | None = None) -> Iterator[tuple[int, np.ndarray, SessionScales]]:
    """``(s, betas float32 [T, V], scales)`` for the sessions ``todo`` in order. While the caller works
    on one, a thread reads the next one (file reads and numpy release the GIL); its
    :func:`session_scales` are computed when the caller asks for it (half of the work on ``helper``
    when given). A session's buffer is reused once the caller asks for the one after. Close the
    generator (``contextlib.closing``) to wait for the thread after an error."""
    if not todo:
        return
    reader = _SessionReader(plan)
    with ThreadPoolExecutor(1, thread_name_prefix="brainnet-betas") as reading:
        ahead = reading.submit(reader.read, todo[0], 0)
        for i, s in enumerate(todo):
            x = ahead.result()
            if i + 1 < len(todo):  # into the buffer of session i - 1, which the caller is done with
                ahead = reading.submit(reader.read, todo[i + 1], (i + 1) % 2)
            yield s, x, session_scales(x, pool=helper)


def write_subject_fmri(plan: SubjectPlan, stage: Path, work: Path, progress: bool = True,
                       on_session_done: SessionHook | None = None) -> None:
    """Stream one subject's betas session by session into ``stage/<subject>/fmri.npy``.

    Each session: read the selected vertices of both hemispheres, then the voxels
    (:func:`brainnet.data.prep.volume.read_volume_session`), trial-major float32 [T, V]; z-score per
    vertex (ddof 0, NaN ignored, NaN -> 0: :mod:`brainnet.data.prep.zscore`, the numbers of
    :func:`brainnet.data.prep.tables.zscore_session`), write the rows as float16 into the partial
    ``.npy``, sync, then leave ``work/<subject>/session_NN.npy`` (bool [V], vertices with NaN) as the
    done marker. While one session is z-scored and written (by the caller and a helper thread, half
    the trials each), a thread reads the next one (:func:`_sessions`; the files past the page cache
    when they are not cached, :func:`~brainnet.data.formats.blockread.read_blocks`). At the end
    ``vertex_valid.npy`` = no NaN in any session, and the partial file is renamed into place. Two
    sessions' selected betas (float32) are in memory at any time.
    """
    final = stage / plan.name / L.FMRI
    valid_path = stage / plan.name / L.VERTEX_VALID
    markers = work / plan.name
    markers.mkdir(parents=True, exist_ok=True)
    partial = markers / "fmri.partial.npy"
    n_sessions = len(plan.betas)
    marker = [markers / f"session_{s:02d}.npy" for s in range(1, n_sessions + 1)]
    if final.is_file() and valid_path.is_file() and all(m.is_file() for m in marker):
        return
    writer = NpyRowWriter(partial, (plan.n_trials, plan.n_vertices), np.float16)
    try:
        if not writer.resumed:
            for m in marker:
                m.unlink(missing_ok=True)
        todo = [s for s in range(n_sessions) if not marker[s].is_file()]
        bar = tqdm(total=len(todo), desc=f"{plan.name} fmri", unit="session", disable=not progress or not todo)
        with (ThreadPoolExecutor(1, thread_name_prefix="brainnet-zscore") as helper,
              contextlib.closing(_sessions(plan, todo, helper)) as sessions):
            for s, x, scales in sessions:
                start = plan.session_rows[s][0]
                zscore_rows(x, scales, lambda row, block, start=start: writer.write_rows(start + row, block), helper)
                writer.flush()
                save_npy(marker[s], scales.has_nan)
                bar.update()
                if on_session_done is not None:
                    on_session_done(plan.name, s + 1)
        bar.close()
    finally:
        writer.close()
    invalid = np.zeros(plan.n_vertices, dtype=bool)
    for m in marker:
        invalid |= np.load(m)
    save_npy(valid_path, ~invalid)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(final)


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    img = Image.fromarray(pixels, mode="RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def write_images(plan: DatasetPlan, stage: Path, work: Path, progress: bool = True) -> None:
    """Stream every image any subject saw into ``stage/images/images.npy`` (uint8 [n, S, S, 3]),
    resized with PIL (bicubic), in resumable chunks; plus ``images/nsd_ids.npy`` (int64 [n])."""
    cfg = plan.config
    final = stage / L.IMAGES
    ids = plan.image_ids
    save_npy(stage / L.IMAGE_IDS, ids)
    if final.is_file():
        return
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "images.partial.npy"
    shape = (ids.size, cfg.image_size, cfg.image_size, 3)
    chunks = [(a, min(a + cfg.image_chunk, ids.size)) for a in range(0, ids.size, cfg.image_chunk)]
    marker = [folder / f"chunk_{i:05d}.done" for i in range(len(chunks))]
    store = NpyRowWriter(partial, shape, np.uint8)
    if not store.resumed:
        for m in marker:
            m.unlink(missing_ok=True)
    todo = [i for i in range(len(chunks)) if not marker[i].is_file()]
    stimuli = nsd.NSDStimuli(nsd.NSDLayout(plan.nsd_root).stimuli) if plan.image_source == "hdf5" and todo else None
    try:
        for i in tqdm(todo, desc="images", unit="chunk", disable=not progress or not todo):
            a, b = chunks[i]
            if stimuli is not None:
                pixels = stimuli[ids[a:b]]
            else:
                pixels = [alg.read_png(plan.image_paths[int(k)]) for k in ids[a:b]]
            store.write_rows(a, np.stack([_resize(px, cfg.image_size) for px in pixels]))
            store.flush()
            marker[i].write_bytes(b"")
    finally:
        store.close()
        if stimuli is not None:
            stimuli.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(final)


def write_surfaces(plan: DatasetPlan, stage: Path) -> None:
    """Write ``surfaces/fsaverage.npz`` (coords float32 [n, 3], faces int32 [F, 3], sulc float32 [n])."""
    save_npz(stage / L.SURFACES, plan.surfaces)
