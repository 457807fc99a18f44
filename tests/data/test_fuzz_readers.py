"""Fuzzing of every source-file reader (issue 13, section 3): random truncations, flipped bytes,
changed header fields and format-aware structural edits of small valid seed files (written by the
nsd-mini writers) must give a :class:`~brainnet.errors.DataFormatError` naming the file or a valid
read, never another exception, a hang or a huge allocation; header / size / structure corruptions
must be detected. See ``tests/_fuzz.py`` for the mutation engine.

Reproducible: hypothesis runs derandomized, without an example database. Cases per run: the sum of
the specs' ``examples`` (:data:`TOTAL_EXAMPLES`).
"""

from __future__ import annotations

import json
import resource
import shutil
import struct
from datetime import timedelta
from pathlib import Path

import _fuzz as fz
import numpy as np
import pandas as pd
import pytest
from _fuzz import Edit, Field, Spec, int_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainnet.data.formats import algonauts, freesurfer, nifti, nsd
from brainnet.data.mini import writers
from brainnet.data.mini.mesh import write_patch
from brainnet.data.prepared import PreparedDataset
from brainnet.errors import DataFormatError

from _mini_cache import prepared_tiny

V, T = 40, 5  # vertices and frames of the seeds
GRID = (6, 5, 4)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
AFFINE[:3, 3] = (-3.0, -2.5, -2.0)

#: hypothesis cases per spec (their sum is the number of cases per run)
EXAMPLES = {
    "mgh-betas": 60, "mgz-values": 45, "mgz-values-unchecked": 30, "label-mgz": 30, "ctab": 30,
    "nifti-roi": 40, "nifti-roi-unchecked": 30, "nifti-betas": 45, "mat-expdesign": 50, "tsv-responses": 40,
    "hdf5-stimuli": 45,
    "png": 40, "npy-fmri": 45, "npy-mask": 20, "surface": 40, "morph": 25, "patch": 40, "pickle-mapping": 40,
    "prepared-manifest": 30, "prepared-fmri": 30, "prepared-npz": 25, "prepared-rois": 15,
}
TOTAL_EXAMPLES = sum(EXAMPLES.values())


def _faces(n: int) -> np.ndarray:
    """A strip of triangles over ``n`` vertices: int [n - 2, 3]."""
    i = np.arange(n - 2)
    return np.stack([i, i + 1, i + 2], axis=1)


def _seeds(root: Path) -> dict[str, Spec]:
    """Valid seed files under ``root`` and their specs (the prepared dataset's specs come later)."""
    import nibabel.freesurfer as fs

    rng = np.random.default_rng(0)
    out: dict[str, Spec] = {}

    def spec(name, filename, read, cut, **kw):
        path = root / name / filename
        if not path.is_file():
            raise AssertionError(f"seed {path} not written")
        kw.setdefault("names", ())
        out[name] = Spec(name, path, path.read_bytes(), read, EXAMPLES[name], cut, **kw)

    def d(name: str) -> Path:
        (root / name).mkdir(parents=True, exist_ok=True)
        return root / name

    dims = tuple(Field(f"dims[{i}]", 4 + 4 * i, ">i", int_values()) for i in range(4))
    mgh_fields = (Field("version", 0, ">i", int_values()), *dims,
                  Field("type", 20, ">i", int_values(valid=(0, 1, 3, 4)), lambda v: v not in (0, 1, 3, 4)))
    # MGH betas (V, 1, 1, T), uncompressed; read in chunks of 2 frames
    writers.write_mgh(d("mgh-betas") / "lh.betas_session01.mgh", rng.normal(size=(V, 1, 1, T)).astype(np.float32))
    spec("mgh-betas", "lh.betas_session01.mgh",  # nibabel writes an optional footer after the data
         lambda p: nsd.read_betas(p, n_vertices=V, n_trials=T, frames_per_chunk=2),
         freesurfer.MGH_DATA_OFFSET + 4 * V * T, fields=mgh_fields)
    values = rng.normal(size=(V, 1, 1, 1)).astype(np.float32)
    writers.write_mgz(d("mgz-values") / "lh.values.mgz", values)
    spec("mgz-values", "lh.values.mgz", lambda p: freesurfer.read_surface_values(p, V), 10**9, fields=mgh_fields,
         gz=True)
    writers.write_mgz(d("mgz-values-unchecked") / "lh.values.mgz", values)
    loose = (mgh_fields[0], *(Field(f.name, f.offset, f.fmt, f.values, lambda v: False) for f in dims))
    spec("mgz-values-unchecked", "lh.values.mgz", freesurfer.read_surface_values, 10**9, fields=loose, gz=True,
         edits=(Edit("1 GB of vertices", fz.set_fields(((4, ">i", 2 ** 28),))),
                Edit("8 GB of frames", fz.set_fields(((16, ">i", 2 ** 31 - 1),)))))
    # label map + colour table
    codes = rng.integers(0, 4, size=(V, 1, 1, 1)).astype(np.float32)
    names = {0: "Unknown", 1: "V1", 2: "V2", 3: "V3"}
    for name in ("label-mgz", "ctab"):
        writers.write_mgz(d(name) / "lh.atlas.mgz", codes)
        writers.write_ctab(d(name) / "atlas.mgz.ctab", names)
    lab, ctab = root / "label-mgz", root / "ctab"
    spec("label-mgz", "lh.atlas.mgz", lambda p: freesurfer.read_label(p, lab / "atlas.mgz.ctab", V), 10**9,
         fields=mgh_fields, gz=True, names=(lab / "atlas.mgz.ctab",))
    spec("ctab", "atlas.mgz.ctab", lambda p: freesurfer.read_label(ctab / "lh.atlas.mgz", p, V), 0,
         edits=(Edit("drop a line", fz.text_lines_edit("drop"), detect=True),
                Edit("repeat a line", fz.text_lines_edit("dup")),
                Edit("junk a token", fz.text_lines_edit("junk"), detect=False)),
         names=(ctab / "lh.atlas.mgz",))
    # NIfTI: a 3-D ROI label volume and 4-D int16 betas (gzip)
    nii_fields = (Field("sizeof_hdr", 0, "<i", int_values()),
                  *(Field(f"dim[{i}]", 40 + 2 * i, "<h", int_values(16)) for i in range(4)),
                  Field("datatype", 70, "<h", int_values(16, valid=(2, 4, 8, 16, 64, 256, 512, 768)),
                        lambda v: v not in (4, 512)),
                  Field("vox_offset", 108, "<f", st.floats(width=32, allow_nan=True)),
                  Field("magic", 344, "<i", int_values()))
    roi = rng.integers(0, 4, size=GRID).astype(np.int16)
    roi[0, 0, 0] = 1
    writers.write_nifti(d("nifti-roi") / "roi.nii.gz", roi, AFFINE)
    spec("nifti-roi", "roi.nii.gz", lambda p: nifti.read_labels(p, 3, GRID, AFFINE), 10**9, fields=nii_fields,
         gz=True)
    writers.write_nifti(d("nifti-roi-unchecked") / "roi.nii.gz", roi, AFFINE)
    spec("nifti-roi-unchecked", "roi.nii.gz", nifti.read_labels, 10**9, gz=True,
         fields=tuple(Field(f.name, f.offset, f.fmt, f.values, lambda v: False) for f in nii_fields[1:5]),
         edits=(Edit("a 4095^3 grid", fz.set_fields(tuple((42 + 2 * i, "<h", 4095) for i in range(3)))),))
    writers.write_nifti(d("nifti-betas") / "betas.nii.gz", rng.integers(-900, 900, size=GRID + (T,)).astype(np.int16),
                        AFFINE)
    index = np.array([0, 7, 33, 119])
    spec("nifti-betas", "betas.nii.gz",
         lambda p: nifti.read_masked(p, index, GRID, AFFINE, n_frames=T, scale=300, frames_per_chunk=2),
         10**9, fields=(*nii_fields, Field("dim[4]", 48, "<h", int_values(16))), gz=True)
    # MAT v5 design
    writers.write_mat(d("mat-expdesign") / "nsd_expdesign.mat", {
        "masterordering": rng.integers(1, 11, size=(1, 12)), "subjectim": rng.integers(1, 100, size=(2, 10)),
        "sharedix": np.array([[3, 5, 9]]), "stimpattern": rng.integers(0, 2, size=(2, 2, 3)).astype(np.uint8)})
    spec("mat-expdesign", "nsd_expdesign.mat", nsd.read_expdesign, 10**9,
         fields=(Field("version", 124, "<H", int_values(16, False), lambda v: v != 0x0100),
                 Field("endian", 126, "<H", int_values(16, False), lambda v: v != 0x494D),
                 Field("first tag type", 128, "<I", int_values(32, False), lambda v: v not in (14,)),
                 Field("first tag bytes", 132, "<I", int_values(32, False))))
    # responses TSV
    rows = {c: np.arange(1, 7) if c in ("TRIAL", "73KID", "10KID") else np.ones(6, int) for c in nsd.RESPONSE_COLUMNS}
    rows["RT"] = np.round(rng.uniform(300, 900, 6), 1)
    pd.DataFrame(rows).to_csv(d("tsv-responses") / "responses.tsv", sep="\t", index=False)
    spec("tsv-responses", "responses.tsv", nsd.read_responses, 0,
         edits=(Edit("drop a line", fz.text_lines_edit("drop"), detect=False),
                Edit("repeat a line (rows out of time order)", fz.text_lines_edit("dup")),
                Edit("junk a token", fz.text_lines_edit("junk"))))
    # HDF5 stimuli
    writers.write_hdf5_images(d("hdf5-stimuli") / "nsd_stimuli.hdf5", rng.integers(0, 256, (4, 6, 6, 3), np.uint8))
    h5_size = (root / "hdf5-stimuli/nsd_stimuli.hdf5").stat().st_size

    def read_stimuli(p):
        with nsd.NSDStimuli(p) as stim:
            return stim[np.arange(len(stim))]

    spec("hdf5-stimuli", "nsd_stimuli.hdf5", read_stimuli, 10**9,
         fields=(Field("signature", 0, "<Q", int_values(64, False)),
                 Field("superblock version", 8, "<B", int_values(8, False)),
                 Field("size of offsets", 13, "<B", int_values(8, False)),
                 Field("size of lengths", 14, "<B", int_values(8, False)),
                 Field("end of file address", 40, "<Q", int_values(64, False),
                       lambda v: v > h5_size)))
    # PNG
    writers.write_png(d("png") / "train-0001_nsd-00001.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    png = (root / "png/train-0001_nsd-00001.png").read_bytes()
    spec("png", "train-0001_nsd-00001.png", algonauts.read_png, png.rindex(b"IEND") - 4,
         fields=(Field("signature", 0, ">Q", int_values(64, False)),),
         edits=(Edit("IHDR width/height", fz.png_ihdr_edit, detect=False),))
    # NPY: training fMRI (memory-mapped) and a vertex mask
    writers.write_npy(d("npy-fmri") / "lh_training_fmri.npy", rng.normal(size=(6, 10)).astype(np.float32))
    npy_fields = (Field("magic", 0, "<I", int_values(32, False)), Field("version", 6, "<B", int_values(8, False)),
                  Field("header length", 8, "<H", int_values(16, False)))
    npy_edits = (Edit("shape", fz.npy_header_edit()), Edit("dtype <f8", fz.npy_header_edit(descr="<f8")),
                 Edit("dtype <f2", fz.npy_header_edit(descr="<f2")), Edit("dtype |O", fz.npy_header_edit(descr="|O")))
    spec("npy-fmri", "lh_training_fmri.npy", lambda p: np.asarray(algonauts.read_training_fmri(p, 6, 10)).sum(),
         10**9, fields=npy_fields, edits=npy_edits)
    writers.write_npy(d("npy-mask") / "lh.all-vertices_fsaverage_space.npy", (rng.random(V) > 0.3).astype(np.float32))
    spec("npy-mask", "lh.all-vertices_fsaverage_space.npy", lambda p: algonauts.read_vertex_mask(p, V), 10**9,
         fields=npy_fields, edits=npy_edits)
    # FreeSurfer surface, morph data, patch
    coords = rng.normal(size=(V, 3)).astype(np.float32)
    fs.write_geometry(str(d("surface") / "lh.sphere"), coords, _faces(V), create_stamp="created by fuzz")
    surf = (root / "surface/lh.sphere").read_bytes()
    at = surf.index(b"\n\n", 3) + 2
    spec("surface", "lh.sphere", lambda p: freesurfer.read_surface(p, V), 10**9,
         fields=(Field("magic", 0, ">H", int_values(16, False)), Field("vnum", at, ">i", int_values()),
                 Field("fnum", at + 4, ">i", int_values(), lambda v: v > V - 2 or v < 0)))
    fs.write_morph_data(str(d("morph") / "lh.sulc"), rng.normal(size=V).astype(np.float32))
    spec("morph", "lh.sulc", lambda p: freesurfer.read_morph(p, V), 10**9,
         fields=(Field("vnum", 3, ">i", int_values()),))
    write_patch(d("patch") / "lh.full.flat.patch.3d", coords, _faces(V))
    spec("patch", "lh.full.flat.patch.3d", lambda p: freesurfer.read_patch(p, V), 10**9,
         fields=(Field("version", 0, ">i", int_values()), Field("n_points", 4, ">i", int_values())))
    # pickled Algonauts ROI mapping
    writers.write_npy(d("pickle-mapping") / "mapping_prf-visualrois.npy",
                      np.array({0: "Unknown", 1: "V1v", 2: "V1d"}, dtype=object))
    spec("pickle-mapping", "mapping_prf-visualrois.npy", algonauts.read_roi_mapping, 10**9,
         fields=npy_fields, edits=(Edit("os.system global", fz.pickle_global_edit),
                                   Edit("dtype <i8", fz.npy_header_edit(descr="<i8")),
                                   Edit("shape", fz.npy_header_edit(shape=(2,)))))
    return out


def _prepared_specs(root: Path) -> dict[str, Spec]:
    """Specs of a copy of a prepared dataset: every mutated file must be caught on open / first access."""

    def open_all(_path):
        data = PreparedDataset(root)
        for name in data.subjects:
            s = data.subject(name)
            s.fmri, s.trials, s.vertices, s.rois, s.memory_index, s.vertex_valid  # noqa: B018
        return data.images, data.image_ids, data.surfaces

    manifest = root / "manifest.json"
    text = json.loads(manifest.read_text())

    def json_edit(change):
        def apply(_raw, data):
            obj = json.loads(json.dumps(text))
            change(obj, data)
            return json.dumps(obj).encode()
        return apply

    def drop_key(obj, data):
        del obj[data.draw(st.sampled_from(["files", "subjects", "images", "format_version", "format"]))]

    def resize(obj, data):
        rel = data.draw(st.sampled_from(sorted(obj["files"])))
        obj["files"][rel]["bytes"] += data.draw(st.sampled_from([-1, 1, 10**12]))

    def retype(obj, data):
        key = data.draw(st.sampled_from(["files", "subjects", "images"]))
        obj[key] = data.draw(st.sampled_from([[], "x", 1, None, {"subj09": 1}]))

    edits = (Edit("drop a key", json_edit(drop_key)), Edit("change a recorded size", json_edit(resize)),
             Edit("retype a table", json_edit(retype)),
             Edit("not an object", lambda raw, data: data.draw(st.sampled_from([b"[]", b"1", b"null", b'"x"']))))
    out = {}
    names = tuple(p for p in root.rglob("*") if p.is_file()) + (root,)
    for name, rel, cut, kw in (
            ("prepared-manifest", "manifest.json", len(manifest.read_bytes().rstrip()), dict(edits=edits)),
            ("prepared-fmri", "subj01/fmri.npy", 10**9, dict(edits=(Edit("shape", fz.npy_header_edit()),
                                                                    Edit("dtype", fz.npy_header_edit(descr="<f4"))))),
            ("prepared-npz", "subj01/trials.npz", 10**9, {}), ("prepared-rois", "subj02/rois.npz", 10**9, {})):
        path = root / rel
        out[name] = Spec(name, path, path.read_bytes(), open_all, EXAMPLES[name], cut, names=names, **kw)
    return out


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, Spec]:
    base = tmp_path_factory.mktemp("fuzz")
    prepared = shutil.copytree(prepared_tiny(tmp_path_factory), base / "prepared", symlinks=False)
    return {**_seeds(base / "seeds"), **_prepared_specs(prepared)}


def test_every_seed_reads(specs):
    """The unmutated seeds are valid (else every detection below would be vacuous)."""
    assert set(specs) == set(EXAMPLES)
    for spec in specs.values():
        spec.read(spec.path)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fuzz(specs, name):
    """Random mutations of one file kind: DataFormatError naming the file or a valid read, never
    another exception; header / size / structure corruptions detected; no large allocation."""
    spec = specs[name]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = []

    @settings(max_examples=spec.examples, deadline=timedelta(seconds=5), derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(data=st.data())
    def run(data):
        count.append(1)
        fz.check_case(spec, data)

    run()
    assert len(count) >= spec.examples
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 256, f"{name}: peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("name", ["mgz-values-unchecked", "nifti-roi-unchecked", "mgh-betas", "hdf5-stimuli"])
def test_declared_sizes_checked_before_allocating(specs, name):
    """A header declaring gigabytes in a small file is refused before the reader allocates them
    (traced peak below 16 MB; before the size checks a 1 GB MGZ / 130 GB NIfTI was allocated first)."""
    import gzip
    import tracemalloc

    spec = specs[name]
    raw = gzip.decompress(spec.seed) if spec.gz else spec.seed
    huge = {"mgz-values-unchecked": ((4, ">i", 2 ** 28),), "nifti-roi-unchecked": ((42, "<h", 4095), (44, "<h", 4095)),
            "mgh-betas": ((16, ">i", 2 ** 30),)}
    if name == "hdf5-stimuli":  # imgBrick's dataspace (dims and max dims): n images 4 -> 2**40
        edited = raw.replace(struct.pack("<QQQQ", 4, 6, 6, 3), struct.pack("<QQQQ", 2 ** 40, 6, 6, 3))
    else:
        edited = fz.set_fields(huge[name])(raw, None)
    spec.path.write_bytes(gzip.compress(edited, mtime=0) if spec.gz else edited)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError) as err:
            spec.read(spec.path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        spec.path.write_bytes(spec.seed)
    assert err.value.path == str(spec.path) and peak < 16 << 20, (str(err.value), peak)
