"""One prepared check of brainnet on a GPU machine: environment, GPU tests, cache fill, training
throughput at 40k vertices and the algonauts-scale preset end to end, in one run.

    python benchmarks/device_check.py --out OUT --quick        # <= 90 s: environment, gpu tests, one short step, small cache fill
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
on. ``OUT/device_check.json`` and ``OUT/device_check.md`` (a markdown table) are rewritten after
every stage, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("device_check")

#: vertices of the algonauts preset's prepared subject (fsaverage6-like mesh, ~49% mask)
ALGONAUTS_VERTICES = 40448
#: a 40-session NSD subject (the algonauts preset at full size)
FULL_SUBJECT = {"sessions": 40, "images": 10000, "trials": 30000}
VIT_LAYERS = (2, 5, 8, 11)


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
    # cache fill: (timm model, reference images, cache images)
    cache_models: tuple[tuple[str, int, int], ...] = ()
    source_size: int = 425
    workers: int = 8
    # algonauts end to end
    preset: str = "algonauts"
    sessions: int = 6
    held_out: int = 1
    backbone: str = "timm:vit_base_patch16_224"
    epochs: int = 3
    fit_model: dict = field(default_factory=dict)


SMALL_MODEL = dict(width=16, conv_blocks=1, mlp_hidden=32, memory_hidden=32, frame_dim=8, t1_dim=8, memory_out=16,
                   behaviour_hidden=16, behaviour_out=8, time_dim=4, n_memory_frames=8)

PLANS = {
    "quick": Plan(device="cuda", stages=("environment", "gpu_tests", "train_step", "cache"), test_timeout=100,
                  steps=5, precisions=("bf16",), cache_models=(("vit_base_patch16_224", 16, 256),)),
    "full": Plan(device="cuda", stages=("environment", "gpu_tests", "train_step", "cache", "algonauts_data",
                                        "algonauts_cache", "algonauts_train", "extrapolation"),
                 cache_models=(("vit_base_patch16_224", 64, 2048), ("vit_large_patch14_224", 48, 1024))),
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
             "", f"`{data['command']}`", "", "| stage | status | wall s | peak GPU GiB | numbers |", "|---|---|---|---|---|"]
    for s in data["stages"]:
        nums = "; ".join(f"{k}: {_fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        if s["status"] != "ok":
            nums = (nums + "; " if nums else "") + s.get("error", "").replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s.get('peak_gpu_gib', '-')} | {nums} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- stages
def environment() -> dict:
    import importlib.metadata as md

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
           "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available()}
    for name, path in (("shm_free_gib", "/dev/shm"), ("tmp_free_gib", "/tmp")):
        try:
            env[name] = round(shutil.disk_usage(path).free / 2**30, 1)
        except OSError:
            env[name] = "n/a"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported(),
                   cudnn=torch.backends.cudnn.version(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                   tf32_cudnn=torch.backends.cudnn.allow_tf32)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
            env["driver"] = smi
        except (OSError, subprocess.TimeoutExpired) as err:
            env["driver"] = f"nvidia-smi: {err}"
    versions = {}
    for pkg in ("numpy", "scipy", "timm", "pytorch-lightning", "torchmetrics", "nibabel", "nilearn", "himalaya",
                "scikit-learn", "pandas", "h5py", "pillow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "missing"
    import brainnet

    env["brainnet"] = str(Path(brainnet.__file__).parent)
    env["versions"] = versions
    return env


def gpu_tests(out: Path, timeout: int) -> dict:
    """``pytest -m gpu tests/test_gpu.py`` in a subprocess; counts from its JUnit XML."""
    xml = out / ".gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::pytest.PytestUnknownMarkWarning", f"--junitxml={xml}"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        text, rc = f"{err.stdout or ''}{err.stderr or ''}\nTIMEOUT after {timeout} s", "timeout"
    text = text if isinstance(text, str) else text.decode(errors="replace")
    (out / "gpu_tests.log").write_text(text)
    res = {"returncode": rc}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        res.update(counts)
        bad = [f"{c.get('name')}: {(c[0].get('message') or '').splitlines()[0][:160] if len(c) and c[0].get('message') else ''}"
               for c in suite.iter("testcase") if any(ch.tag in ("failure", "error") for ch in c)]
        if bad:
            res["failed_tests"] = bad
        xml.unlink()
    if rc not in (0, 5) and not res.get("failures") and not res.get("errors"):
        raise RuntimeError(f"pytest exited with {rc}; see gpu_tests.log: {text[-500:]}")
    return res


def random_batch(plan: Plan, rng: np.random.Generator, n_frames: int, pin: bool) -> dict:
    """A cached-token batch of ``plan.batch_size`` trials with EncodingDataset's keys and dtypes
    (fp16 8x8 tokens, float32 memory / behaviour / fMRI), on the CPU (pinned when ``pin``)."""
    from brainnet.data.layout import N_BEHAVIOUR

    b = plan.batch_size

    def t(a):
        x = torch.from_numpy(np.ascontiguousarray(a))
        return x.pin_memory() if pin else x

    valid = rng.random((b, n_frames)) > 0.1
    return {"subject": "subj01",
            "local": {str(i): t(rng.standard_normal((b, c, 8, 8), np.float32).astype(np.float16))
                      for i, c in enumerate(plan.channels)},
            "global": {str(i): t(rng.standard_normal((b, c), np.float32).astype(np.float16))
                       for i, c in enumerate(plan.channels)},
            "memory": t(rng.standard_normal((b, n_frames, plan.memory_dim), np.float32) * valid[..., None]),
            "memory_valid": t(valid), "behaviour": t(rng.standard_normal((b, N_BEHAVIOUR), np.float32)),
            "memory_behaviour": t(rng.standard_normal((b, n_frames, N_BEHAVIOUR), np.float32) * valid[..., None]),
            "fmri": t(rng.standard_normal((b, plan.vertices), np.float32))}


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(n, 3))
    return (100 * x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def train_step(plan: Plan) -> dict:
    """MemModel (width 192 unless the plan says otherwise) on ``plan.vertices`` vertices, all of
    them every step: samples/s of forward + loss + backward + AdamW, batches moved from pinned
    host memory each step (as Lightning moves them), first step excluded."""
    from brainnet.models import MemConfig, MemModel
    from brainnet.training.optim import encoding_loss

    device = torch.device(plan.device)
    rng = np.random.default_rng(0)
    names = tuple(str(i) for i in range(len(plan.channels)))
    cfg = MemConfig(in_channels=plan.channels, layer_names=names, memory_dim=plan.memory_dim, **plan.model)
    coords = {"subj01": _sphere(plan.vertices, rng)}
    hemi = {"subj01": (np.arange(plan.vertices) % 2).astype(np.int64)}
    batches = [random_batch(plan, rng, cfg.n_memory_frames, pin=device.type == "cuda") for _ in range(4)]
    res = {"vertices": plan.vertices, "width": cfg.width, "batch": plan.batch_size, "timed_steps": plan.steps}
    for precision in plan.precisions:
        torch.manual_seed(0)
        model = MemModel(cfg, coords, hemi).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        losses = []
        t0 = 0.0
        for k in range(plan.steps + 1):
            if k == 1:
                _sync(device)
                t0 = time.perf_counter()
            batch = _to(batches[k % len(batches)], device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                pred = model(batch)
            loss = encoding_loss(pred, batch["fmri"], "smooth_l1", 0.01)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        _sync(device)
        dt = time.perf_counter() - t0
        res[f"{precision}_samples_per_s"] = round(plan.batch_size * plan.steps / dt, 1)
        res[f"{precision}_ms_per_step"] = round(1000 * dt / plan.steps, 1)
        res[f"{precision}_loss_first_last"] = [round(float(losses[0]), 4), round(float(losses[-1]), 4)]
        if device.type == "cuda":
            res[f"{precision}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del model, opt
    return res


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cache_fill(plan: Plan, model_name: str, n_ref: int, n_cache: int) -> dict:
    """TokenCache fill vs the per-sample reference of bench_cache (same backbone, same device)."""
    from benchmarks.bench_cache import make_images, reference_fill
    from brainnet.backbones import create_backbone
    from brainnet.cache import TokenCache

    device = torch.device(plan.device)
    torch.manual_seed(0)
    bb = create_backbone(f"timm:{model_name}").to(device)
    images = make_images(max(n_ref, n_cache), plan.source_size, seed=0)
    with torch.inference_mode():  # warm-up (kernel selection, lazy init) outside the timings
        bb.get_tokens(torch.rand(2, 3, bb.input_size, bb.input_size, device=device))
    _sync(device)
    t0 = time.perf_counter()
    reference_fill(bb, images[:n_ref], pool=8)
    _sync(device)
    ref_s = time.perf_counter() - t0
    res = {}

    def fill(workers: int) -> float:
        cache = TokenCache(bb, pool=8)
        t0 = time.perf_counter()
        cache.fill(images[:n_cache], batch_size=64, num_workers=workers, progress=False, forward="main")
        _sync(device)
        res["bytes_per_image"] = cache.bytes_per_image
        return time.perf_counter() - t0

    new_s, workers = _with_worker_fallback(fill, plan.workers, res)
    ref_ips, new_ips = n_ref / ref_s, n_cache / new_s
    return {"input_px": bb.input_size, "layers": len(bb.layer_names), "reference_images": n_ref,
            "reference_img_per_s": round(ref_ips, 1), "cache_images": n_cache, "cache_img_per_s": round(new_ips, 1),
            "ratio": round(new_ips / ref_ips, 2), "goal_ratio": 10, "cache_workers": workers, **res}


def _with_worker_fallback(fn, workers: int, res: dict):
    """``fn(workers)``; when DataLoader workers fail (e.g. a small /dev/shm), record why and run
    ``fn(0)`` (decoding in this process). Returns (result, workers used)."""
    try:
        return fn(workers), workers
    except RuntimeError as err:
        if workers == 0:
            raise
        log.warning("fill with %d workers failed (%s); again with none", workers, err)
        res["workers_error"] = f"{type(err).__name__}: {err}"[:300]
        return fn(0), 0


def algonauts_data(plan: Plan, work: Path, ctx: dict) -> dict:
    """Generate and prepare nsd-mini's preset with ``plan.sessions`` sessions (full vertex count)."""
    from brainnet.data import PreparedDataset
    from brainnet.data.mini import MiniNSDConfig, make_mini_nsd
    from brainnet.data.prep import prepare

    cfg = MiniNSDConfig.preset(plan.preset, n_sessions=plan.sessions, n_held_out_sessions=plan.held_out)
    src, dst = work / f"nsd-mini-{plan.preset}-{plan.sessions}s", work / f"prepared-{plan.preset}-{plan.sessions}s"
    t0 = time.perf_counter()
    paths = make_mini_nsd(src, cfg, progress=False)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare(paths.nsd, paths.algonauts, dst, image_size=cfg.image_size, n_heldout_sessions=plan.held_out,
            progress=False)
    prep_s = time.perf_counter() - t0
    data = PreparedDataset(dst)
    subj = data.subject(1)
    ctx.update(root=dst, n_images=data.n_images, n_trials=subj.n_trials,
               n_train_trials=int(subj.split_mask("train").sum()))
    return {"preset": plan.preset, "sessions": plan.sessions, "held_out_sessions": plan.held_out,
            "images": data.n_images, "trials": subj.n_trials, "vertices": subj.n_vertices,
            "generate_s": round(gen_s, 1), "prepare_s": round(prep_s, 1), "image_px": data.image_size}


def algonauts_cache(plan: Plan, ctx: dict) -> dict:
    """The backbone's tokens of every prepared image, computed on ``plan.device``."""
    from brainnet.training.features import build_features, resolve_backbone

    layers = VIT_LAYERS if plan.backbone.startswith("timm:vit") else None
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bb = resolve_backbone(plan.backbone, layers=layers).to(plan.device)
    res: dict = {}

    def fill(workers: int):
        t0 = time.perf_counter()
        feats = build_features(ctx["root"], bb, pool=8, batch_size=64, num_workers=workers)
        _sync(torch.device(plan.device))
        return feats, time.perf_counter() - t0

    (feats, fill_s), workers = _with_worker_fallback(fill, plan.workers, res)
    ctx.update(features=feats, cache_s=fill_s)
    return {"backbone": plan.backbone, "layers": list(feats.layer_names), "images": feats.n_images,
            "fill_s": round(fill_s, 1), "img_per_s": round(feats.n_images / fill_s, 1), "workers": workers, **res}


def algonauts_train(plan: Plan, work: Path, ctx: dict) -> dict:
    """fit_encoder for ``plan.epochs`` epochs on the GPU, scored on the held-out sessions."""
    import pytorch_lightning as pl  # noqa: F401  (import time outside the timing)

    from brainnet.training.config import TrainConfig
    from brainnet.training.fit import fit_encoder

    accel = "gpu" if plan.device == "cuda" else "cpu"
    cfg = TrainConfig(data_dir=str(ctx["root"]), backbone=plan.backbone, model_options=dict(plan.fit_model),
                      max_epochs=plan.epochs, batch_size=32, patience=None, eval_split="heldout", top_k=1,
                      out_dir=str(work / "run"), resume=False, accelerator=accel, devices=1, seed=0)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_encoder(cfg, features=ctx["features"])
    total = time.perf_counter() - t0
    ctx["train_s"] = total
    s = fit.summary
    return {"epochs": plan.epochs, "steps": fit.global_step, "train_trials": ctx["n_train_trials"],
            "fit_and_eval_s": round(total, 1), "best_val_r": round(s.get("best_val_r", float("nan")), 4),
            "heldout_mean_r": round(s.get("eval_mean_r", float("nan")), 4),
            "heldout_mean_score": round(s.get("eval_mean_score", float("nan")), 2)}


def extrapolation(plan: Plan, ctx: dict) -> dict:
    """Cache + training time of a 40-session subject, scaled linearly from the measured stages
    (cache by images, training and held-out scoring by trials). An extrapolation."""
    scale_img = FULL_SUBJECT["images"] / ctx["n_images"]
    scale_trials = FULL_SUBJECT["trials"] / ctx["n_trials"]
    cache_s = ctx["cache_s"] * scale_img
    train_s = ctx["train_s"] * scale_trials
    return {"note": f"EXTRAPOLATED from {plan.sessions} sessions (linear in images / trials), not measured",
            "cache_s": round(cache_s, 1), "train_and_eval_s": round(train_s, 1),
            "total_s": round(cache_s + train_s, 1), "goal_s": 300, "epochs": plan.epochs}


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for device_check.json / .md / gpu_tests.log")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="environment, gpu tests, a few training steps, a small cache fill (<= 90 s)")
    mode.add_argument("--dry-run", action="store_true", help="every stage on tiny inputs on the CPU")
    ap.add_argument("--wheels", default=None, help="install these wheels (scripts/device_wheels.sh) first")
    ap.add_argument("--site", default="/tmp/brainnet-site", help="where --wheels installs")
    ap.add_argument("--work", default=None, help="scratch folder for generated data (default: OUT/../device_check_work)")
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
    skip = set(filter(None, args.skip.split(",")))
    ctx = rec.context
    for stage in plan.stages:
        if stage in skip:
            rec.skip(stage, "--skip")
        elif stage == "environment":
            rec.run(stage, environment)
        elif stage == "gpu_tests":
            rec.run(stage, gpu_tests, out, plan.test_timeout)
        elif stage == "train_step":
            rec.run(stage, train_step, plan)
        elif stage == "cache":
            for name, n_ref, n_cache in plan.cache_models:
                rec.run(f"cache_{name}", cache_fill, plan, name, n_ref, n_cache)
        elif stage == "algonauts_data":
            rec.run(stage, algonauts_data, plan, work, ctx)
        elif stage in ("algonauts_cache", "algonauts_train", "extrapolation"):
            need = {"algonauts_cache": "root", "algonauts_train": "features", "extrapolation": "train_s"}[stage]
            if need not in ctx:
                rec.skip(stage, f"an earlier stage failed or was skipped (no {need})")
            elif stage == "algonauts_cache":
                rec.run(stage, algonauts_cache, plan, ctx)
            elif stage == "algonauts_train":
                rec.run(stage, algonauts_train, plan, work, ctx)
            else:
                rec.run(stage, extrapolation, plan, ctx)
    log.info("done in %.0f s; %s", rec.data["total_seconds"], out / "device_check.md")
    print(markdown(rec.data))
    return rec.data


if __name__ == "__main__":
    main()
