"""The notebooks' setup helper: output folder, data resolution, threads, key numbers."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from threadpoolctl import threadpool_info

import brainnet.notebook as nbsetup
from brainnet.data import MiniData, PreparedDataset
from brainnet.notebook import KEY_NUMBERS, limit_threads, setup_notebook, show_library_messages

from _mini_cache import prepared_tiny


def setup(name, **kwargs):
    """setup_notebook leaving logging alone (the test session's handlers stay as they are)."""
    return setup_notebook(name, log_level=None, **kwargs)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_tiny(tmp_path_factory)


def test_setup_opens_the_given_dataset_and_makes_the_output_folder(prepared, tmp_path):
    ctx = setup("02_train_mem", data_home=tmp_path / "home", data_dir=str(prepared))
    assert isinstance(ctx.data, PreparedDataset) and ctx.data.root == prepared
    assert ctx.data.subjects == ("subj01", "subj02")
    assert ctx.mini is None and ctx.source == "prepared dataset"
    assert ctx.home == (tmp_path / "home").resolve()
    assert ctx.out == ctx.home / "outputs" / "02_train_mem" and ctx.out.is_dir()
    text = str(ctx)
    assert str(ctx.out) in text and str(prepared) in text and "subj02" in text
    assert ctx.elapsed() >= 0.0


def test_empty_data_dir_means_nsd_mini_in_the_data_home(prepared, tmp_path, monkeypatch):
    calls = []

    def fake_ensure_mini(home, preset, seed, image_size, progress, space):
        calls.append((home, preset, seed, image_size, progress, space))
        return MiniData(source=prepared.parent, prepared=prepared)

    monkeypatch.setattr(nbsetup, "ensure_mini", fake_ensure_mini)
    ctx = setup("04_brain_to_network", out_dir=tmp_path / "out", data_home=tmp_path / "home",
                         data_dir="", mini_preset="tiny", mini_seed=3, image_size=32, space="fship")
    assert calls == [((tmp_path / "home").resolve(), "tiny", 3, 32, False, "fship")]
    assert ctx.data.root == prepared and ctx.mini.prepared == prepared
    assert ctx.source == "nsd-mini (tiny)"
    assert ctx.out == (tmp_path / "out").resolve()
    # a notebook that makes its data itself opens nothing
    calls.clear()
    bare = setup("01_prepare", data_home=tmp_path / "home", open_dataset=False)
    assert bare.data is None and bare.mini is None and calls == []
    assert str(bare) == f"01_prepare: outputs in {bare.out}"


def test_a_folder_that_is_not_a_prepared_dataset_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished prepared dataset"):
        setup("03_memory_replay", data_home=tmp_path, data_dir=tmp_path / "nothing")


def test_key_numbers_keep_their_order(tmp_path):
    ctx = setup("01_prepare", out_dir=tmp_path, data_home=tmp_path, open_dataset=False)
    key = {"source": "x", "b": 1, "a": [1.5, 2.5]}
    path = ctx.save_key_numbers(key)
    assert path == tmp_path.resolve() / KEY_NUMBERS
    assert list(json.loads(path.read_text())) == ["source", "b", "a"]
    assert json.loads(path.read_text()) == key


def test_limit_threads():
    torch_before = torch.get_num_threads()
    blas_before = [pool["num_threads"] for pool in threadpool_info()]
    limiter = limit_threads(1)
    try:
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        limiter.restore_original_limits()
        torch.set_num_threads(torch_before)
    assert [pool["num_threads"] for pool in threadpool_info()] == blas_before
    assert limit_threads(0) is None
    with pytest.raises(ValueError, match="threads"):
        limit_threads(-1)


def test_setup_limits_threads_and_seeds_torch_once(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(nbsetup, "limit_threads", asked.append)
    setup("04_brain_to_network", data_home=tmp_path, open_dataset=False, threads=2, seed=7)
    first = torch.rand(3)
    setup("04_brain_to_network", data_home=tmp_path, open_dataset=False, seed=7)
    assert torch.equal(torch.rand(3), first)
    torch.rand(1)
    state = torch.get_rng_state()
    setup("04_brain_to_network", data_home=tmp_path, open_dataset=False)  # seed None: untouched
    assert torch.equal(torch.get_rng_state(), state)
    assert asked == [2, 0, 0]


def test_library_messages_show_once(capsys):
    logger = logging.getLogger("brainnet")
    level, handlers = logger.level, list(logger.handlers)
    try:
        show_library_messages("INFO")
        show_library_messages("INFO")  # a re-run setup cell adds no second handler
        logging.getLogger("brainnet.data.prep").info("prepared subj01")
        logging.getLogger("brainnet.data.prep").debug("hidden")
        err = capsys.readouterr().err
        assert err.count("prepared subj01") == 1 and "hidden" not in err
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_notebook_shows_brainnet_errors_in_one_line(tmp_path):
    """A cell that meets bad input fails with the error's type and one-line message (no traceback
    frames); other errors keep IPython's traceback."""
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from brainnet.notebook import show_errors_briefly\nshow_errors_briefly()"),
                nbformat.v4.new_code_cell("from brainnet.errors import DataFormatError\n"
                                          "raise DataFormatError('/data/x.npy', 'a float array', 'int8')")]
    src = tmp_path / "bad.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3")
    err = info.value
    assert err.ename == "DataFormatError"
    assert err.evalue == "/data/x.npy: expected a float array, found int8"
    assert err.traceback[0] == "DataFormatError: /data/x.npy: expected a float array, found int8"
    assert len(err.traceback) == 2 and not any("File " in line or "raise " in line for line in err.traceback)
