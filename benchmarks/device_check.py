"""One prepared check of brainnet on a GPU machine: environment, GPU tests, cache fill, training
throughput at 40k vertices and the algonauts-scale preset end to end, in one run.

    python benchmarks/device_check.py --out OUT --quick        # <= 90 s
    python benchmarks/device_check.py --out OUT                # full, <= 5 min on an H200
    python benchmarks/device_check.py --out OUT --dry-run      # every stage on tiny inputs, on the CPU
    python benchmarks/device_check.py --out OUT --wheels .whl  # first install the carried wheels

Run by hand on a GPU machine, never by CI. ``--wheels DIR`` installs the wheels that
``scripts/device_wheels.sh`` downloaded (``pip install --no-index --no-deps --target``) and puts
them and this source tree on the path of this process and of the pytest subprocess. Stages:

* ``environment``: GPU, CUDA, driver, torch and package versions;
* ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` in a subprocess (pass / fail / skip counts);
* ``train_step``: MemModel at the seed's width (192) on 40,448 vertices, cached-token batches of
  32, fp32 and bf16-mixed: samples/s and peak GPU memory (quick: a few bf16 steps);
* ``cache_<model>``: token-cache fill (:class:`brainnet.cache.TokenCache`, batched, workers)
  vs the per-sample reference of ``benchmarks/bench_cache.py`` (batch 1, fp32 dict) for
  ViT-B/16 and ViT-L/14 (timm, random weights, 224 px): images/s both ways and the ratio
  (quick: ViT-B/16 on 256 images);
* ``algonauts_data``: nsd-mini's algonauts preset (40,962 vertices per hemisphere, ~49% mask)
  with fewer sessions, generated and prepared on this machine;
* ``algonauts_cache`` / ``algonauts_train``: ViT-B/16 tokens of its images on the GPU, then
  ``fit_encoder`` (MemModel width 192) for a fixed number of epochs and the held-out score;
* ``extrapolation``: cache + training time scaled to a 40-session subject (10,000 images,
  30,000 trials) from the measured stages; an extrapolation, not a measurement.

Each stage records its wall time, peak GPU memory and numbers, or its error, and the run goes
on (the stages are in ``benchmarks/device_stages.py``). ``OUT/device_check.json`` and
``OUT/device_check.md`` (a markdown table) are rewritten after every stage, so a run cut short
keeps what it measured. docs/device-check.md says how to run it through the device tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("device_check")

#: vertices of the algonauts preset's prepared subject (fsaverage6-like mesh, ~49% mask)
ALGONAUTS_VERTICES = 40448
#: decoding workers of the cache fills: all cores but two (on the H200 machine's 16 cores, 8 workers
#: decoded and resized 1,817 images/s, 15 workers 3,091/s, with the forward at ~4,000/s in TF32)
CACHE_WORKERS = max(1, min(14, (os.cpu_count() or 2) - 2))


@dataclass(frozen=True)
class Plan:
    """Sizes of every stage for one mode."""

    device: str
    stages: tuple[str, ...]
    test_timeout: int = 150
    # train_step
    vertices: int = ALGONAUTS_VERTICES
    model: dict = field(default_factory=dict)  # MemConfig overrides (width 192 = the default)
    channels: tuple[int, ...] = (768,) * 4
    memory_dim: int = 768
    batch_size: int = 32
    steps: int = 20
    precisions: tuple[str, ...] = ("fp32", "bf16")
    # cache fill: (timm model, reference images, cache images); random initial weights (timing only)
    cache_models: tuple[tuple[str, int, int], ...] = ()
    source_size: int = 425
    workers: int = CACHE_WORKERS
    # algonauts end to end
    preset: str = "algonauts"
    sessions: int = 6
    held_out: int = 1
    backbone: str = "timm:vit_base_patch16_224-random"  # random initial weights: no download on the device
    epochs: int = 3
    fit_model: dict = field(default_factory=dict)


SMALL_MODEL = dict(width=16, conv_blocks=1, mlp_hidden=32, memory_hidden=32, frame_dim=8, t1_dim=8, memory_out=16,
                   behaviour_hidden=16, behaviour_out=8, time_dim=4, n_memory_frames=8)

PLANS = {
    "quick": Plan(device="cuda", stages=("environment", "gpu_tests", "train_step", "cache"), test_timeout=100,
                  steps=5, precisions=("bf16",), cache_models=(("vit_base_patch16_224", 16, 256),)),
    "full": Plan(device="cuda", stages=("environment", "gpu_tests", "train_step", "cache", "algonauts_data",
                                        "algonauts_cache", "algonauts_train", "extrapolation"),
                 # fills of 8,192 / 2,048 images (a subject has ~10,000); references on 256 / 96 images
                 # (on 64 the ViT-B reference's rate varied from 71 to 126 images/s between runs)
                 cache_models=(("vit_base_patch16_224", 256, 8192), ("vit_large_patch14_224", 96, 2048))),
    "dry-run": Plan(device="cpu", stages=("environment", "gpu_tests", "train_step", "cache", "algonauts_data",
                                          "algonauts_cache", "algonauts_train", "extrapolation"),
                    test_timeout=300, vertices=2000, model=SMALL_MODEL, channels=(32, 64), memory_dim=64,
                    batch_size=4, steps=2, cache_models=(("vit_tiny_patch16_224", 2, 4),), source_size=64,
                    workers=0, preset="tiny", sessions=4, backbone="brainnet-tiny-random", epochs=1,
                    fit_model=SMALL_MODEL),
}


# ---------------------------------------------------------------- set-up
def install_wheels(wheels: Path, target: Path) -> None:
    """pip-install every wheel of ``wheels`` into ``target`` (no index, no dependencies) and put
    ``target`` and this source tree first on the path (this process and its subprocesses)."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise FileNotFoundError(f"no wheels in {wheels}; run scripts/device_wheels.sh first")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(target), *files], check=True)
    add_to_path(target)


def add_to_path(*folders: Path) -> None:
    for f in reversed(folders):
        sys.path.insert(0, str(f))
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([*(str(f) for f in folders), *([old] if old else [])])


class Recorder:
    """Stage results, written to ``out/device_check.json`` and ``.md`` after every stage."""

    def __init__(self, out: Path, mode: str, argv: list[str]):
        self.out = out
        self.data = {"mode": mode, "command": " ".join(["python", "benchmarks/device_check.py", *argv]),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "stages": []}
        self.context: dict = {}  # what later stages need from earlier ones (not written)

    def run(self, name: str, fn, *args) -> dict | None:
        log.info("stage %s ...", name)
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        entry = {"stage": name, "status": "ok"}
        try:
            entry["metrics"] = fn(*args) or {}
        except Exception as err:  # every stage reports its own failure and the run goes on
            entry["status"] = "failed"
            entry["error"] = f"{type(err).__name__}: {err}"[:2000]
            entry["traceback"] = traceback.format_exc()[-4000:]
            log.error("stage %s failed: %s", name, entry["error"])
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        if cuda:
            entry["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        self.data["stages"].append(entry)
        self.write()
        log.info("stage %s %s in %.1f s: %s", name, entry["status"], entry["seconds"],
                 entry.get("metrics", entry.get("error")))
        return entry.get("metrics")

    def skip(self, name: str, why: str) -> None:
        self.data["stages"].append({"stage": name, "status": "skipped", "error": why, "seconds": 0.0})
        self.write()

    def write(self) -> None:
        self.data["total_seconds"] = round(sum(s["seconds"] for s in self.data["stages"]), 1)
        (self.out / "device_check.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out / "device_check.md").write_text(markdown(self.data))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def markdown(data: dict) -> str:
    """The results as a markdown table (one row per stage)."""
    lines = [f"device check, mode `{data['mode']}`, started {data['started']}, total {data.get('total_seconds')} s",
             "", f"`{data['command']}`", "", "| stage | status | wall s | peak GPU GiB | numbers |",
             "|---|---|---|---|---|"]
    for s in data["stages"]:
        nums = "; ".join(f"{k}: {_fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        if s["status"] != "ok":
            why = s.get("error", "").replace("|", "/").replace("\n", " ")[:300]
            nums = f"{nums}; {why}" if nums else why
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s.get('peak_gpu_gib', '-')} | {nums} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for device_check.json / .md / gpu_tests.log")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="environment, gpu tests, a few training steps, a small cache fill (<= 90 s)")
    mode.add_argument("--dry-run", action="store_true", help="every stage on tiny inputs on the CPU")
    ap.add_argument("--wheels", default=None, help="install these wheels (scripts/device_wheels.sh) first")
    ap.add_argument("--site", default="/tmp/brainnet-site", help="where --wheels installs")
    ap.add_argument("--work", default=None,
                    help="scratch folder for generated data (default: /tmp/device_check_work/<mode>)")
    ap.add_argument("--sessions", type=int, default=None, help="sessions of the generated subject")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of the end-to-end stage")
    ap.add_argument("--label", default="", help="free text stored in the JSON (e.g. the commit checked)")
    ap.add_argument("--skip", default="", help="comma-separated stages to leave out")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    mode_name = "quick" if args.quick else "dry-run" if args.dry_run else "full"
    plan = PLANS[mode_name]
    over = {k: v for k, v in (("sessions", args.sessions), ("epochs", args.epochs)) if v is not None}
    plan = dataclasses.replace(plan, **over)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path("/tmp/device_check_work") / mode_name
    work.mkdir(parents=True, exist_ok=True)

    rec = Recorder(out, mode_name, argv)
    rec.data["label"] = args.label
    if args.wheels:
        rec.run("install", lambda: install_wheels(Path(args.wheels), Path(args.site)) or {"wheels": args.wheels})
    add_to_path(REPO)
    from benchmarks import device_stages as st

    skip = set(filter(None, args.skip.split(",")))
    ctx = rec.context
    for stage in plan.stages:
        if stage in skip:
            rec.skip(stage, "--skip")
        elif stage == "environment":
            rec.run(stage, st.environment)
        elif stage == "gpu_tests":
            rec.run(stage, st.gpu_tests, out, plan.test_timeout)
        elif stage == "train_step":
            rec.run(stage, st.train_step, plan)
        elif stage == "cache":
            for name, n_ref, n_cache in plan.cache_models:
                rec.run(f"cache_{name}", st.cache_fill, plan, name, n_ref, n_cache)
        elif stage == "algonauts_data":
            rec.run(stage, st.algonauts_data, plan, work, ctx)
        elif stage in ("algonauts_cache", "algonauts_train", "extrapolation"):
            need = {"algonauts_cache": "root", "algonauts_train": "features", "extrapolation": "train_s"}[stage]
            if need not in ctx:
                rec.skip(stage, f"an earlier stage failed or was skipped (no {need})")
            elif stage == "algonauts_cache":
                rec.run(stage, st.algonauts_cache, plan, ctx)
            elif stage == "algonauts_train":
                rec.run(stage, st.algonauts_train, plan, work, ctx)
            else:
                rec.run(stage, st.extrapolation, plan, ctx)
    log.info("done in %.0f s; %s", rec.data["total_seconds"], out / "device_check.md")
    print(markdown(rec.data))
    return rec.data


if __name__ == "__main__":
    main()
