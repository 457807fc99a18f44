"""Crash driver for the kill / disk-full tests, run as a script in a fresh interpreter.

``python _crash.py SCENARIO ARGS_JSON`` prints one JSON line (the scenario's record). Every run of the
code under test happens in a forked child (this process only imports), so a kill costs a fork, not an
interpreter start. A kill point is the N-th call (N drawn by a seeded RNG from the calls an
uninterrupted run makes) of any of a scenario's write functions: the child SIGKILLs itself just
before that call runs.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path

import numpy as np

from _mini_cache import output_digests  # this script runs from tests/ (its folder is on sys.path)


def _hook(targets, kill_at: int | None, counter: list, names: list):
    """Wrap ``(owner, attr)`` functions: count calls; SIGKILL before call number ``kill_at``."""
    for owner, attr in targets:
        orig, label = getattr(owner, attr), f"{getattr(owner, '__name__', owner)}.{attr}"

        def wrapped(*a, _orig=orig, _name=label, **k):
            counter[0] += 1
            names.append(_name)
            if kill_at is not None and counter[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return _orig(*a, **k)

        setattr(owner, attr, wrapped)


def in_child(fn, targets=(), kill_at=None, fsize=None, audit=None) -> dict:
    """Run ``fn()`` in a forked child; returns {"signal", "exit", "calls", "point", "error", "opened"}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        counter, names, out = [0], [], {}
        try:
            if fsize is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-limit write fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            if audit is not None:
                out["opened"] = opened = []
                roots = tuple(str(Path(a).resolve()) for a in audit)

                def hook(event, args):
                    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
                        mode, flags = args[1] or "", args[2] or 0
                        writes = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
                        path = os.path.realpath(os.fsdecode(args[0]))
                        if writes and path.startswith(roots):
                            opened.append(path)

                sys.addaudithook(hook)
            _hook(targets, kill_at, counter, names)
            fn()
        except BaseException as exc:  # reported to the parent
            out["error"] = f"{type(exc).__name__}: {exc}"
        out["calls"] = counter[0]
        out["names"] = names
        os.write(w, json.dumps(out).encode())
        os.close(w)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        body = fh.read()
    _, status = os.waitpid(pid, 0)
    rec = json.loads(body) if body else {}
    rec["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    return rec


def kill_loop(run, targets, seed: int, n_kills: int, names: list[str]) -> list[dict]:
    """``n_kills`` runs of ``run``, each killed at a random one of the calls (``names``) an uninterrupted run makes."""
    total = len(names)
    if not total:
        raise RuntimeError("the uninterrupted run made no hooked call (did it fail?)")
    rng = np.random.default_rng(seed)
    log, left = [], total
    for _ in range(n_kills):
        # a resumed run skips what was finished: at least (left - n) calls remain, so a draw below that kills
        n = int(rng.integers(1, left + 1))
        rec = in_child(run, targets, kill_at=n)
        # the function name is known for a kill of a fresh run (later runs skip calls)
        rec["kill_at"], rec["of"], rec["point"] = n, left, names[n - 1] if left == total else None
        rec.pop("names", None)
        log.append(rec)
        if not rec["signal"]:
            break
        left = max(1, left - n + 1)
    return log


# ------------------------------------------------------------------ scenarios
def prepare_scenario(a: dict) -> dict:
    from brainnet.data import io
    from brainnet.data.prep import prepare

    def run(out=a["out"]):
        prepare(a["nsd"], a["alg"], out, image_size=32, progress=False)

    targets = [(os, "replace"), (os, "pwrite"), (os, "fsync"), (io, "preallocate")]
    ref = in_child(lambda: run(a["ref"]), targets)
    if ref.get("error"):
        raise RuntimeError(f"uninterrupted run failed: {ref['error']}")
    kills = kill_loop(run, targets, a["seed"], a["kills"], ref.pop("names"))
    final = in_child(run, audit=[a["nsd"], a["alg"]])
    full = in_child(lambda: run(a["full"]), fsize=a["fsize"])
    left = {p.relative_to(a["full"]).as_posix(): p.stat().st_size for p in Path(a["full"]).rglob("*") if p.is_file()}
    after = in_child(lambda: run(a["full"]))
    return {"kills": kills, "final": final, "disk_full": full, "left_after_full": left, "after_full": after,
            "digests": output_digests(Path(a["out"])), "ref_digests": output_digests(Path(a["ref"])),
            "full_digests": output_digests(Path(a["full"]))}


def cache_scenario(a: dict) -> dict:
    import torch

    from brainnet.cache import store

    images = np.random.default_rng(0).integers(0, 256, size=(24, 40, 40, 3), dtype=np.uint8)

    def run(cache_dir=a["cache"], fsize=None):
        from brainnet.backbones import create_backbone
        from brainnet.cache import TokenCache

        torch.set_num_threads(1)
        bb = create_backbone("brainnet-tiny-random", seed=0)
        for n in (10, 24):  # two fills: a grown cache and rows appended
            TokenCache(bb, pool=4, storage="memmap", cache_dir=cache_dir).fill(
                images[:n], batch_size=4, num_workers=0, progress=False)

    targets = [(os, "replace"), (store, "preallocate"), (store.TokenStore, "_write_rows")]
    ref = in_child(lambda: run(a["ref"]), targets)
    if ref.get("error"):
        raise RuntimeError(f"uninterrupted run failed: {ref['error']}")
    kills = kill_loop(run, targets, a["seed"], a["kills"], ref.pop("names"))
    final = in_child(run)
    full = in_child(lambda: run(a["full"]), fsize=a["fsize"])
    left = {p.name: p.stat().st_size for p in Path(a["full"]).rglob("*") if p.is_file()}
    after = in_child(lambda: run(a["full"]))
    return {"ref": ref, "kills": kills, "final": final, "disk_full": full, "left_after_full": left,
            "after_full": after, "digests": output_digests(Path(a["cache"])),
            "ref_digests": output_digests(Path(a["ref"])), "full_digests": output_digests(Path(a["full"]))}


def fit_scenario(a: dict) -> dict:
    import pickle
    import warnings

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from brainnet.training import module, resume_state

    from _mini_cache import tiny_fit_config

    def run(out, **kw):
        import logging

        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")
        torch.set_num_threads(1)
        from brainnet.training.fit import fit_encoder

        with open(a["features"], "rb") as fh:
            features = pickle.load(fh)
        fit_encoder(tiny_fit_config(a["data"], out, max_epochs=3, top_k=1, progress_bar=False, **kw),
                    features=features)

    targets = [(module.EncoderModule, "training_step"), (torch, "save"), (os, "replace"), (os, "fsync")]
    ref = in_child(lambda: run(a["ref"]), targets)
    if ref.get("error"):
        raise RuntimeError(f"uninterrupted run failed: {ref['error']}")
    kills = kill_loop(lambda: run(a["out"]), targets, a["seed"], a["kills"], ref.pop("names"))
    final = in_child(lambda: run(a["out"]))
    epoch_kill = in_child(lambda: run(a["epoch"]), [(resume_state.AtomicCheckpointIO, "save_checkpoint")],
                          kill_at=3)  # after epoch 1's top-k and last.ckpt: an epoch-boundary kill
    epoch_final = in_child(lambda: run(a["epoch"]))
    full = in_child(lambda: run(a["full"]), fsize=a["fsize"])
    left = sorted(p.name for p in Path(a["full"]).rglob("*") if p.is_file())
    after = in_child(lambda: run(a["full"]))

    def weights(folder):
        return torch.load(Path(folder) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)

    def diff(x, y):
        sx, sy = weights(x)["state_dict"], weights(y)["state_dict"]
        return max(float((sx[k].float() - sy[k].float()).abs().max()) for k in sx)

    return {"ref": ref, "kills": kills, "final": final, "epoch_kill": epoch_kill, "epoch_final": epoch_final,
            "disk_full": full, "left_after_full": left, "after_full": after,
            "diff_random": diff(a["ref"], a["out"]), "diff_epoch": diff(a["ref"], a["epoch"]),
            "steps": [weights(f)["global_step"] for f in (a["ref"], a["out"], a["epoch"], a["full"])],
            "metrics": [Path(f, "metrics.json").is_file() for f in (a["out"], a["epoch"], a["full"])]}


if __name__ == "__main__":
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"prepare": prepare_scenario, "cache": cache_scenario, "fit": fit_scenario}[scenario](args)))
