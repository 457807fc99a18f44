"""The stages of ``benchmarks/device_check.py`` (see its docstring); each returns a dict of numbers.

``plan`` is a :class:`device_check.Plan` (sizes of the stage for the mode); ``ctx`` carries what
a later stage needs from an earlier one (the prepared dataset, the features, timings).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("device_check")

#: a 40-session NSD subject (the algonauts preset at full size)
FULL_SUBJECT = {"sessions": 40, "images": 10000, "trials": 30000}
#: ViT layers cached for the end-to-end stage
VIT_LAYERS = (2, 5, 8, 11)


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
        res.update(junit_outcomes(xml))
        xml.unlink()
    if rc not in (0, 5) and not res.get("failed"):
        raise RuntimeError(f"pytest exited with {rc}; see gpu_tests.log: {text[-500:]}")
    return res


def junit_outcomes(xml: Path) -> dict:
    """Counts of passed / failed / skipped / xfailed tests in a pytest JUnit XML, failing tests' names."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
    failed = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        tags = {ch.tag: ch for ch in case}
        bad = tags.get("failure", tags.get("error"))
        if bad is not None:
            counts["failed"] += 1
            msg = (bad.get("message") or "").strip().splitlines()
            failed.append(f"{case.get('name')}: {msg[0][:160] if msg else ''}")
        elif "skipped" in tags:
            counts["xfailed" if tags["skipped"].get("type") == "pytest.xfail" else "skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failed_tests": failed} if failed else counts


def random_batch(plan, rng: np.random.Generator, n_frames: int, pin: bool) -> dict:
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


def step_setup(plan) -> tuple:
    """What :func:`train_step` trains on: (MemConfig, coords, hemi, 4 synthetic batches) for
    ``plan.vertices`` vertices of one subject (width 192 unless ``plan.model`` says otherwise)."""
    from brainnet.models import MemConfig

    rng = np.random.default_rng(0)
    names = tuple(str(i) for i in range(len(plan.channels)))
    cfg = MemConfig(in_channels=plan.channels, layer_names=names, memory_dim=plan.memory_dim, **plan.model)
    coords = {"subj01": _sphere(plan.vertices, rng)}
    hemi = {"subj01": (np.arange(plan.vertices) % 2).astype(np.int64)}
    pin = torch.device(plan.device).type == "cuda"
    batches = [random_batch(plan, rng, cfg.n_memory_frames, pin=pin) for _ in range(4)]
    return cfg, coords, hemi, batches


def timed_steps(model, batches, steps: int, device, precision: str = "fp32", on_step=None) -> tuple[float, list]:
    """``steps`` training steps (forward + loss + backward + AdamW) after one untimed warm-up step,
    batches moved from host memory each step (as Lightning moves them). ``on_step()`` (e.g. a
    profiler's ``step``) is called after every step. Returns (seconds of the timed steps, losses)."""
    from brainnet.training.optim import encoding_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    t0 = 0.0
    for k in range(steps + 1):
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
        if on_step is not None:
            on_step()
    _sync(device)
    return time.perf_counter() - t0, losses


def train_step(plan) -> dict:
    """MemModel (width 192 unless the plan says otherwise) on ``plan.vertices`` vertices, all of
    them every step: samples/s of forward + loss + backward + AdamW, batches moved from pinned
    host memory each step (as Lightning moves them), first step excluded."""
    from brainnet.models import MemModel

    device = torch.device(plan.device)
    cfg, coords, hemi, batches = step_setup(plan)
    res = {"vertices": plan.vertices, "width": cfg.width, "batch": plan.batch_size, "timed_steps": plan.steps}
    for precision in plan.precisions:
        torch.manual_seed(0)
        model = MemModel(cfg, coords, hemi).to(device).train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        dt, losses = timed_steps(model, batches, plan.steps, device, precision)
        res[f"{precision}_samples_per_s"] = round(plan.batch_size * plan.steps / dt, 1)
        res[f"{precision}_ms_per_step"] = round(1000 * dt / plan.steps, 1)
        res[f"{precision}_loss_first_last"] = [round(float(losses[0]), 4), round(float(losses[-1]), 4)]
        if device.type == "cuda":
            res[f"{precision}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del model
    return res


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cache_fill(plan, model_name: str, n_ref: int, n_cache: int) -> dict:
    """TokenCache fill vs the per-sample reference of bench_cache (same backbone, same device)."""
    from benchmarks.bench_cache import make_images, reference_fill
    from brainnet.backbones import create_backbone
    from brainnet.cache import TokenCache

    device = torch.device(plan.device)
    torch.manual_seed(0)
    bb = create_backbone(f"timm:{model_name}", weights="random").to(device)  # timing only: no download
    n = max(n_ref, n_cache)  # 1,024 distinct images repeated (drawing 8,192 took ~20 s of one core)
    images = make_images(min(n, 1024), plan.source_size, seed=0)[np.arange(n) % 1024]
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
    res["loader_img_per_s"] = round(n_cache / loader_seconds(images[:n_cache], bb.input_size, workers), 1)
    ref_ips, new_ips = n_ref / ref_s, n_cache / new_s
    return {"input_px": bb.input_size, "layers": len(bb.layer_names), "reference_images": n_ref,
            "reference_img_per_s": round(ref_ips, 1), "cache_images": n_cache, "cache_img_per_s": round(new_ips, 1),
            "ratio": round(new_ips / ref_ips, 2), "goal_ratio": 10, "cache_workers": workers, **res}


def loader_seconds(images: np.ndarray, size: int, workers: int, batch_size: int = 64) -> float:
    """Seconds to decode and resize ``images`` through the fill's DataLoader alone (no forward): the
    most images/s a fill with these workers can reach."""
    from brainnet.cache.fill import _ResizedImages, _worker_init

    loader = torch.utils.data.DataLoader(_ResizedImages(images, range(len(images)), size), batch_size=batch_size,
                                         num_workers=workers, worker_init_fn=_worker_init if workers else None,
                                         pin_memory=torch.cuda.is_available())
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


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


def algonauts_data(plan, work: Path, ctx: dict) -> dict:
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


def algonauts_cache(plan, ctx: dict) -> dict:
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
    return {"backbone": plan.backbone, "weights": feats.weights, "layers": list(feats.layer_names),
            "images": feats.n_images,
            "fill_s": round(fill_s, 1), "img_per_s": round(feats.n_images / fill_s, 1), "workers": workers, **res}


def algonauts_train(plan, work: Path, ctx: dict) -> dict:
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


def extrapolation(plan, ctx: dict) -> dict:
    """Cache + training time of a 40-session subject, scaled linearly from the measured stages
    (cache by images, training and held-out scoring by trials). An extrapolation."""
    scale_img = FULL_SUBJECT["images"] / ctx["n_images"]
    scale_trials = FULL_SUBJECT["trials"] / ctx["n_trials"]
    cache_s = ctx["cache_s"] * scale_img
    train_s = ctx["train_s"] * scale_trials
    return {"note": f"EXTRAPOLATED from {plan.sessions} sessions (linear in images / trials), not measured",
            "cache_s": round(cache_s, 1), "train_and_eval_s": round(train_s, 1),
            "total_s": round(cache_s + train_s, 1), "goal_s": 300, "epochs": plan.epochs}
