"""``prepare``'s fMRI stage vs reading its source betas alone, on one nsd-mini tree, one run.

(a) plain read: every byte of every betas file the stage reads (the per-session surface MGH files
and, for a volume space, the func1mm NIfTI files), ``readinto`` one reused buffer of the stage's
chunk (:data:`brainnet.data.formats.betas.FRAMES_PER_CHUNK` trials of one file) at a time; nothing
is decoded. (b) the fMRI stage: :func:`brainnet.data.prep.write.write_subject_fmri` for every
subject of the tree (read, z-score, float16 rows written and synced into a scratch ``fmri.npy``).

Warm page cache: one read first, then (read, stage) twice; the second pair is reported. Cold
(``--cold [N]``, needs root): ``sync; echo 3 > /proc/sys/vm/drop_caches`` before each of a plain
read, a direct read, a direct read while the stage's output bytes are written, and a stage; N
rounds. "direct read": the same bytes read ``O_DIRECT`` (8 MiB reads into one page-aligned buffer,
no page cache: the disk's own speed; this machine's buffered reads spend 4-14 s of kernel CPU on
19.7 GB, varying from run to run). The stage reads the betas and writes its output to the same disk,
so "read||write" (the read while another thread writes and syncs as many bytes as the stage does;
cold: the direct read, warm: the plain read) is the disk's floor for it. ``--prepare`` also runs the
whole ``prepare`` of the tree in a child process (warm) and reports its wall time and peak RSS.

    python benchmarks/bench_prepare.py /tmp/alg2                    # an existing nsd-mini tree
    python benchmarks/bench_prepare.py --preset algonauts --sessions 6 --cold --prepare

Also prints the CPU seconds (all threads) of both: on a shared machine the wall times follow the
other processes' load, the CPU seconds much less.
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from brainnet.data.formats.freesurfer import mgh_info
from brainnet.data.mini.config import MiniNSDPaths
from brainnet.data.prep.config import PrepareConfig
from brainnet.data.prep.plan import DatasetPlan, make_plan
from brainnet.data.prep.write import write_subject_fmri

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
try:
    from brainnet.data.formats.betas import FRAMES_PER_CHUNK
except ImportError:  # the code before issue 11 (to time it with this script): 64 trials per read
    FRAMES_PER_CHUNK = 64


def betas_files(plan: DatasetPlan) -> list[Path]:
    """Every file the fMRI stage reads, in its order."""
    files = []
    for subject in plan.subjects:
        for s, pair in enumerate(subject.betas):
            files += list(pair)
            if subject.volume is not None:
                files.append(subject.volume.betas[s])
    return files


def _cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def plain_read(files: list[Path]) -> tuple[float, float, int]:
    """Wall and CPU seconds to read every byte of ``files`` into one reused buffer of the stage's chunk;
    bytes read."""
    chunks = {}
    for f in files:
        if f.suffix == ".mgh":
            info = mgh_info(f)
            chunks[f] = FRAMES_PER_CHUNK * info.shape[0] * info.dtype.itemsize
        else:
            chunks[f] = 1 << 22
    buf = memoryview(bytearray(max(chunks.values())))
    total = 0
    start, cpu = time.perf_counter(), _cpu()
    for f in files:
        view = buf[: chunks[f]]
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return time.perf_counter() - start, _cpu() - cpu, total


def direct_read(files: list[Path], block: int = 1 << 23) -> float | None:
    """Wall seconds to read every byte of ``files`` ``O_DIRECT`` in ``block``-byte reads into one
    page-aligned buffer; None where the platform or file system has no direct reads."""
    flag = getattr(os, "O_DIRECT", None)
    if flag is None:
        return None
    buf = memoryview(mmap.mmap(-1, block))
    start = time.perf_counter()
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY | flag)
        except OSError:
            return None
        try:
            offset = 0
            while (n := os.preadv(fd, [buf], offset)) == block:
                offset += n
        finally:
            os.close(fd)
    return time.perf_counter() - start


def fmri_stage(plan: DatasetPlan, scratch: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of :func:`write_subject_fmri` for every subject, into a fresh folder under
    ``scratch``; bytes it wrote."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    try:
        start, cpu = time.perf_counter(), _cpu()
        for subject in plan.subjects:
            write_subject_fmri(subject, folder / "stage", folder / "work", progress=False)
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        return wall, cpu, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(folder)


def plain_write(nbytes: int, scratch: Path, block: int = 1 << 22) -> float:
    """Wall seconds to write ``nbytes`` (4 MiB blocks) into a scratch file and fsync it: what the
    stage's own output costs the disk (the stage syncs each session for crash safety)."""
    buf = memoryview(bytes(block))
    path = Path(tempfile.mkdtemp(dir=scratch)) / "plain.bin"
    try:
        start = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            left = nbytes
            while left > 0:
                left -= os.write(fd, buf[: min(block, left)])
            os.fsync(fd)
        finally:
            os.close(fd)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(path.parent)


def read_while_writing(files: list[Path], nbytes: int, scratch: Path, direct: bool) -> float:
    """Wall seconds of reading ``files`` while another thread runs :func:`plain_write` of ``nbytes``,
    both done: the disk's floor for the stage, which reads the one and writes the other. The read is
    :func:`direct_read` when ``direct`` (cold: the disk's own speed) and there is one, else
    :func:`plain_read` (warm: from the page cache)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        writing = pool.submit(plain_write, nbytes, scratch)
        if not direct or direct_read(files) is None:
            plain_read(files)
        writing.result()
    return time.perf_counter() - start


def drop_caches() -> bool:
    """Empty the page cache (root only); False when this system does not allow it."""
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
        return True
    except OSError:
        return False


def whole_prepare(paths: MiniNSDPaths, space: str, scratch: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of a whole ``prepare`` of the tree, in a child process."""
    out = scratch / "prepared"
    code = ("import sys; from brainnet.data.prep import prepare; "
            "prepare(sys.argv[1], sys.argv[2], sys.argv[3], space=sys.argv[4], progress=False)")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(paths.nsd), str(paths.algonauts), str(out), space], check=True)
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", help="an nsd-mini root (holds nsd/ and algonauts2023/)")
    ap.add_argument("--preset", default="algonauts", help="without a tree: generate this preset")
    ap.add_argument("--sessions", type=int, default=6, help="without a tree: sessions per subject")
    ap.add_argument("--scratch", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--space", default="fsaverage")
    ap.add_argument("--cold", type=int, nargs="?", const=1, default=0, metavar="N",
                    help="also time both N times (default 1) with an emptied page cache (root)")
    ap.add_argument("--prepare", action="store_true", help="also time the whole prepare (child process)")
    args = ap.parse_args(argv)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bench-prepare-"))
    scratch.mkdir(parents=True, exist_ok=True)
    if args.tree:
        paths = MiniNSDPaths.under(args.tree)
    else:
        from brainnet.data.mini.generate import MiniNSDConfig, make_mini_nsd

        paths = make_mini_nsd(scratch / "tree", MiniNSDConfig.preset(args.preset, n_sessions=args.sessions),
                              progress=False)
    plan = make_plan(paths.nsd, paths.algonauts, PrepareConfig(space=args.space))
    files = betas_files(plan)
    work = scratch / "stage-runs"
    work.mkdir(exist_ok=True)

    plain_read(files)  # warm the page cache
    rows = []
    for _ in range(2):
        *read, size = plain_read(files)
        *stage, written = fmri_stage(plan, work)
    write_s = plain_write(written, work)
    plain_read(files)
    rows.append(("warm", *read, None, *stage, write_s, read_while_writing(files, written, work, direct=False)))
    cold = "not asked (--cold)"
    for _ in range(args.cold):
        if not drop_caches():
            cold = f"unavailable: cannot write {DROP_CACHES} (not root, or a container)"
            break
        read = plain_read(files)[:2]
        drop_caches()
        direct = direct_read(files)
        drop_caches()
        both = read_while_writing(files, written, work, direct=True)
        drop_caches()
        rows.append(("cold", *read, direct, *fmri_stage(plan, work)[:2], write_s, both))
        cold = "measured"
    n_trials = sum(s.n_trials for s in plan.subjects)
    print(f"tree {paths.root}: {len(plan.subjects)} subject(s), {n_trials} trials, "
          f"{plan.subjects[0].n_vertices} units (subject 1), {len(files)} betas files, {size / 1e9:.2f} GB read, "
          f"{written / 1e9:.2f} GB written by the stage")
    print(f"{'cache':6s} {'plain read s':>13s} {'GB/s':>6s} {'fMRI stage s':>13s} {'ratio':>6s} "
          f"{'direct read s':>14s} {'stage/direct':>13s} {'read cpu s':>11s} {'stage cpu s':>12s} "
          f"{'write+fsync s':>14s} {'read||write s':>14s} {'stage/(read||write)':>20s}")
    na = f"{'-':>14s} {'-':>13s}"
    for name, read_s, read_cpu, direct_s, stage_s, stage_cpu, w_s, both_s in rows:
        direct = na if direct_s is None else f"{direct_s:14.2f} {stage_s / direct_s:13.2f}"
        print(f"{name:6s} {read_s:13.2f} {size / read_s / 1e9:6.2f} {stage_s:13.2f} {stage_s / read_s:6.2f} "
              f"{direct} {read_cpu:11.2f} {stage_cpu:12.2f} {w_s:14.2f} {both_s:14.2f} {stage_s / both_s:20.2f}")
    cold_rows = [r for r in rows if r[0] == "cold"]
    if len(cold_rows) > 1:
        print(f"cold, median of {len(cold_rows)} rounds: stage / plain read "
              f"{statistics.median(r[4] / r[1] for r in cold_rows):.2f}, stage / (read||write) "
              f"{statistics.median(r[4] / r[7] for r in cold_rows):.2f}")
    print(f"cold cache: {cold}")
    print("direct read: O_DIRECT, no page cache (cold rounds only); write+fsync: the stage's output bytes written "
          "and synced alone; read||write: the read (cold: direct, warm: plain) while another thread writes and "
          "syncs them (the disk's floor for the stage)")
    result = {"bytes": size, "written": written, "rows": rows, "cold": cold}
    if args.prepare:
        wall, rss = whole_prepare(paths, args.space, scratch)
        print(f"whole prepare (warm, child process): {wall:.1f} s, peak RSS {rss:.2f} GB")
        result.update(prepare_s=wall, prepare_rss_gb=rss)
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
