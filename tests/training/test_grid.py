"""Ray Tune grid runner: results per trial, resume without rerunning, errored trials reported."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from brainnet.training.grid import ensure_ray, grid_search, run_grid, trial_seed  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the whole module, started through ensure_ray."""
    if ray.is_initialized():
        pytest.skip("Ray already initialised in this process")
    saved = os.environ.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    started = ensure_ray(num_cpus=2, start_attempts=3)  # the test machine is shared
    print(f"\nray start: {time.perf_counter() - t0:.1f} s")
    assert started
    yield
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


def _make_lstsq_trainable(counter_file: str):
    """A toy trainable: fit y = slope * x by least squares; log each call to counter_file."""

    def lstsq_trainable(config: dict) -> dict:
        with open(counter_file, "a") as fh:
            fh.write(f"{config['slope']}\n")
        rng = np.random.default_rng(config["seed"])
        x = rng.normal(size=(200, 1))
        y = config["slope"] * x[:, 0] + config["noise"] * rng.normal(size=200)
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        return {"slope_hat": float(coef[0]), "mse": float(np.mean((y - x @ coef) ** 2))}

    return lstsq_trainable


def _make_failing_trainable():
    """A trainable that raises when config["fail"] (nested, so Ray ships it by value)."""

    def failing_trainable(config: dict) -> dict:
        if config["fail"]:
            raise ValueError(f"planted failure for fail={config['fail']}")
        return {"score": 1.0}

    return failing_trainable


def test_grid_search_space_and_seed():
    space = grid_search(lag=range(3), subject=[1, 2])
    assert space["lag"] == {"grid_search": [0, 1, 2]}
    assert "seed" in space
    assert trial_seed({"lag": 1, "subject": 2}) == trial_seed({"subject": 2, "lag": 1})
    assert trial_seed({"lag": 1}) != trial_seed({"lag": 2})
    assert trial_seed({"lag": 1}, base_seed=1) != trial_seed({"lag": 1}, base_seed=0)
    assert "seed" not in grid_search(lag=[0], base_seed=None)
    assert grid_search(seed=[3, 4])["seed"] == {"grid_search": [3, 4]}
    with pytest.raises(TypeError, match="axis 'lag'"):
        grid_search(lag=5)
    with pytest.raises(ValueError, match="no values"):
        grid_search(lag=[])


def test_run_grid_results_and_resume(ray_local, tmp_path):
    counter = tmp_path / "calls.txt"
    trainable = _make_lstsq_trainable(str(counter))
    space = grid_search(slope=[0.5, 2.0], noise=[0.1])
    t0 = time.perf_counter()
    table = run_grid(trainable, space, "toy", tmp_path / "ray", metric="mse", mode="min",
                     verbose=0)
    print(f"\n2-trial grid: {time.perf_counter() - t0:.1f} s")
    assert len(table) == 2
    assert sorted(table["slope"]) == [0.5, 2.0]
    assert table["error"].isna().all()
    for _, row in table.iterrows():
        assert row["slope_hat"] == pytest.approx(row["slope"], abs=0.05)
        assert row["seed"] == trial_seed({"slope": row["slope"], "noise": 0.1})
        assert "slope=" in os.path.basename(row["trial_dir"])
    assert len(counter.read_text().splitlines()) == 2

    again = run_grid(trainable, space, "toy", tmp_path / "ray", metric="mse", mode="min",
                     resume=True, verbose=0)
    assert len(counter.read_text().splitlines()) == 2, "finished trials were rerun"
    assert sorted(again["slope"]) == [0.5, 2.0]
    np.testing.assert_allclose(np.sort(again["slope_hat"]), np.sort(table["slope_hat"]))

    with pytest.raises(FileExistsError, match="resume=True"):
        run_grid(trainable, space, "toy", tmp_path / "ray", metric="mse", mode="min",
                 resume=False, verbose=0)


def test_run_grid_errored_trial_is_reported(ray_local, tmp_path):
    table = run_grid(_make_failing_trainable(), grid_search(fail=[False, True]), "errs", tmp_path,
                     metric="score", mode="max", verbose=0)
    assert len(table) == 2
    bad = table[table["fail"]]
    good = table[~table["fail"]]
    assert good["error"].isna().all() and good["score"].iloc[0] == 1.0
    print("\nerror column:", bad["error"].iloc[0])
    assert bad["error"].iloc[0].startswith("ValueError: planted failure for fail=True")


def test_run_grid_bad_input(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        run_grid(_make_failing_trainable(), {}, "x", tmp_path, metric="score", mode="up")
    with pytest.raises(ValueError, match="max_concurrent"):
        run_grid(_make_failing_trainable(), {}, "x", tmp_path, metric="score", mode="max",
                 max_concurrent=0)


_KILLED_DRIVER = r"""
import sys, time
from brainnet.training.grid import grid_search, run_grid

def make(counter):  # a closure: Ray ships it by value, with the counter path
    def slow_trainable(config):
        with open(counter, "a") as fh:
            fh.write(f"{config['slope']}\n")
        time.sleep(1.5)
        return {"slope": config["slope"], "finished": 1.0}
    return slow_trainable

run_grid(make(sys.argv[2]), grid_search(slope=[1.0, 2.0, 3.0, 4.0]), "killed", sys.argv[1], metric="finished",
         mode="max", max_concurrent=1, verbose=0)
"""


def _slow_trainable(counter_file: str):
    def slow_trainable(config: dict) -> dict:
        with open(counter_file, "a") as fh:
            fh.write(f"{config['slope']}\n")
        time.sleep(1.5)
        return {"slope": config["slope"], "finished": 1.0}

    return slow_trainable


def test_killed_grid_driver_resumes_to_a_finished_grid(ray_local, tmp_path):
    """SIGKILL of the driver process after its first trials: rerunning the same grid (resume) finishes it."""
    import signal
    import subprocess
    import sys

    counter = tmp_path / "calls.txt"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, "-c", _KILLED_DRIVER, str(tmp_path / "ray"), str(counter)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if counter.is_file() and len(counter.read_text().splitlines()) >= 2:  # one trial done, the second running
            break
        time.sleep(0.1)
    assert driver.poll() is None, "the driver ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    started_before = len(counter.read_text().splitlines())
    assert 2 <= started_before < 4
    table = run_grid(_slow_trainable(str(counter)), grid_search(slope=[1.0, 2.0, 3.0, 4.0]), "killed",
                     tmp_path / "ray", metric="finished", mode="max", max_concurrent=1, resume=True, verbose=0)
    assert sorted(table["slope"]) == [1.0, 2.0, 3.0, 4.0] and table["error"].isna().all()
    assert (table["finished"] == 1.0).all()
    # every trial's seed is the one grid_search derives (not a placeholder of it)
    seeds = [int(x) for x in table.sort_values("slope")["seed"]]
    assert seeds == [trial_seed({"slope": s}) for s in (1.0, 2.0, 3.0, 4.0)]
    calls = [float(x) for x in counter.read_text().split()]
    assert set(calls) == {1.0, 2.0, 3.0, 4.0}
    print(f"\nkilled after {started_before} trial starts; {len(calls)} trial starts in all")


def test_ensemble_recipe_on_ray(ray_local, tmp_path_factory):
    """The ROI-model ensemble's Ray runner: each stage is a Ray Tune grid of fit_encoder runs (workers build their
    own features from the token cache); a rerun trains nothing."""
    from brainnet.training.ensemble import EnsembleConfig, run_ensemble

    from _mini_cache import prepared_tiny, tiny_fit_config

    root = prepared_tiny(tmp_path_factory)
    out = tmp_path_factory.mktemp("ensemble-ray")
    train = tiny_fit_config(root, "", subjects=("subj01",), max_epochs=1, top_k=1, eval_split="val",
                            vertices_per_step=None, image_size=32)
    ens = EnsembleConfig.reduced(n_random=0, runner="ray", max_concurrent=2)
    t0 = time.perf_counter()
    run = run_ensemble(train, ens, out)
    print(f"\nensemble on Ray: {time.perf_counter() - t0:.1f} s")
    assert list(run.runs["name"]) == ["whole-seed0", "clusters3-all"] and run.runs["trained"].all()
    assert run.runs["best_val_r"].notna().all()
    again = run_ensemble(train, ens, out)
    assert not again.runs["trained"].any()
