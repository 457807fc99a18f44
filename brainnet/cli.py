"""Thin command line: ``brainnet make-mini-nsd``, ``prepare``, ``verify``, ``demo``.

Every sub-command only parses arguments and calls the library; the logic lives in
:mod:`brainnet.data.mini.generate`, :mod:`brainnet.data.prep.pipeline`,
:class:`brainnet.data.PreparedDataset` and :mod:`brainnet.demo`.

A failure the user can act on (bad or missing input, no weights, a bad setting, a full disk)
prints one line ``brainnet: error: <message>`` on stderr and exits with status 2; the traceback
only with ``--debug`` or ``BRAINNET_DEBUG=1``. Ctrl-C exits with 130 (long jobs resume on rerun).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from brainnet.errors import DEBUG_ENV

#: Exit status of a failure reported in one line (argparse's own usage errors use it too).
EXIT_ERROR = 2


def _parse_subjects(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise SystemExit(f"--subjects: expected comma-separated integers like '1,2', got {text!r}") from None


def _cmd_make_mini_nsd(args: argparse.Namespace) -> int:
    import dataclasses

    from brainnet.data.mini.generate import MiniNSDConfig, make_mini_nsd

    config = MiniNSDConfig.preset(args.preset)
    overrides = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.subjects is not None:
        if args.subjects < 1:
            raise SystemExit(f"--subjects: expected a positive number, got {args.subjects}")
        overrides["n_subjects"] = args.subjects
        if args.sessions is None and isinstance(config.n_sessions, tuple):
            # the preset lists sessions per subject: repeat its pattern for the new count
            overrides["n_sessions"] = tuple(config.n_sessions[i % len(config.n_sessions)] for i in range(args.subjects))
    if args.sessions is not None:
        overrides["n_sessions"] = args.sessions
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    if overrides:
        config = dataclasses.replace(config, **overrides)
    paths = make_mini_nsd(args.out, config)
    print(f"nsd-mini written to {args.out} ({paths})")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    subjects = _parse_subjects(args.subjects)
    nc: float | str | None = args.nc_threshold
    if nc is not None and nc != "auto":
        try:
            nc = float(nc)
        except ValueError:
            raise SystemExit(f"--nc-threshold: expected a number or 'auto', got {nc!r}") from None
    from brainnet.data.prep import prepare

    out = prepare(
        nsd_dir=args.nsd_dir,
        alg_dir=args.alg_dir,
        out_dir=args.out_dir,
        subjects=subjects,
        space=args.space,
        beta_version=args.beta_version,
        nc_threshold=nc,
        image_size=args.image_size,
        split_seed=args.split_seed,
        fsaverage_dir=args.fsaverage_dir,
        ncsnr_dir=args.ncsnr_dir,
    )
    print(f"prepared dataset: {out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from brainnet.data.prepared import PreparedDataset

    n = PreparedDataset(args.dir).verify(progress=not args.quiet)
    print(f"{args.dir}: {n} files verified")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from brainnet.demo import run_demo

    params = {}
    for item in args.param or []:
        if "=" not in item:
            raise SystemExit(f"-p/--param: expected NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key] = value
    run_demo(out_dir=args.out, notebooks=args.notebooks, parameters=params, html=not args.no_html)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainnet",
        description="Brain encoding models for NSD / Algonauts 2023 (memory encoding, brain-to-network maps).",
    )
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-mini-nsd", help="write nsd-mini: NSD + Algonauts trees with planted truth")
    p.add_argument("out", help="output folder (gets nsd/, algonauts2023/, ground_truth.npz)")
    p.add_argument("--preset", default="default", help="size preset: tiny, default or algonauts")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects")
    p.add_argument("--sessions", type=int, default=None, help="sessions per subject (last 3 held out)")
    p.add_argument("--image-size", type=int, default=None, help="stimulus size in pixels")
    p.set_defaults(func=_cmd_make_mini_nsd)

    p = sub.add_parser("prepare", help="prepare NSD + Algonauts data (or the Algonauts 2023 release alone) "
                                       "into a brainnet dataset")
    p.add_argument("--nsd-dir", default=None, help="NSD root (holds nsddata/, nsddata_betas/, ...); "
                   "without it: an image-level dataset from the Algonauts 2023 release alone "
                   "(no trial order, behaviour, noise ceiling)")
    p.add_argument("--alg-dir", required=True, help="Algonauts 2023 root (holds subj01/, ...)")
    p.add_argument("--fsaverage-dir", default=None, help="without --nsd-dir: FreeSurfer fsaverage folder for the "
                   "surfaces, e.g. $FREESURFER_HOME/subjects/fsaverage (default: nilearn's download, when online)")
    p.add_argument("--ncsnr-dir", default=None, help="without --nsd-dir: an NSD root holding the subjects' "
                   "nsddata_betas/ppdata/subjXX/fsaverage/<beta version>/{lh,rh}.ncsnr.mgh (the noise ceiling the "
                   "release hides; default: none, scores fall back to r)")
    p.add_argument("--out-dir", required=True, help="prepared dataset folder")
    p.add_argument("--subjects", default=None, help="comma-separated subject numbers (default: all found)")
    p.add_argument("--space", default="fsaverage", help="surface space (fsaverage)")
    p.add_argument("--beta-version", default="betas_fithrf_GLMdenoise_RR", help="NSD beta folder name")
    p.add_argument("--nc-threshold", default=None, help="extend the Algonauts mask by NC (fraction) or 'auto'")
    p.add_argument("--image-size", type=int, default=224, help="stored image size in pixels")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test image shuffle")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("verify", help="check a prepared dataset: every file's size, header and sha256")
    p.add_argument("dir", help="prepared dataset folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("demo", help="run the notebooks with papermill on nsd-mini (or your data)")
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--notebooks", nargs="*", default=None, help="notebook names (default: all in notebooks/)")
    p.add_argument("-p", "--param", action="append", help="NAME=VALUE passed to every notebook")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export")
    p.set_defaults(func=_cmd_demo)
    return parser


def _one_line(err: BaseException) -> str:
    """The error as the user sees it: the message, or the type for one without a message."""
    from brainnet.errors import BrainnetError

    text = " ".join(str(err).split())
    if isinstance(err, BrainnetError) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    from brainnet.errors import BrainnetError, debug_requested

    args = build_parser().parse_args(argv)
    debug = args.debug or debug_requested()
    # the library logs under "brainnet" (NullHandler); the command line shows its INFO messages
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if debug:
        logging.getLogger("brainnet").setLevel(logging.DEBUG)
    try:
        return args.func(args)
    except (BrainnetError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"brainnet: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print("brainnet: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
