"""``ipassr train``: train a network from a patch file (its published recipe by default).

Train iPASSR (the default), NAFSSR, PASSRnet or a plugin's network (--arch). Defaults reproduce its
paper (recipes/); every key of the config can be given as an option or in --config FILE (TOML or
YAML). Run directory: OUT/config.toml, OUT/checkpoints/, OUT/weights/{last,best}.safetensors,
OUT/log.jsonl. Every TrainConfig key is an option (``lr_step_epochs`` -> ``--lr-step-epochs``; booleans also as
``--no-...``). Precedence: defaults < the network's recipe (``--arch``, ``--model-size``) <
``--preset`` < ``--config FILE`` < options. Multi-GPU or multi-process:
``torchrun --nproc_per_node=K -m ipassr train ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_command, option_type
from ..errors import IpassrError
from ..train.config import (FIELDS, PRESETS, RENAMED, TrainConfig, apply_overrides,
                            parse_duration, read_config_file)



def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, run, __doc__, weights=False)
    parser.add_argument("--out", "-o", required=True, type=Path, help="run directory")
    parser.add_argument("--config", type=Path, help="config file (.toml or .yaml)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="smoke: a couple of minutes on a CPU (without --patches it uses "
                             "scikit-image's Motorcycle pair; without --validate it validates on "
                             "a crop of it each epoch, so best.safetensors is the run's best)")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT's last checkpoint (options given override the saved config)")
    parser.add_argument("--auto-resume", action="store_true",
                        help="resume when OUT holds a checkpoint, else start (for short time slots)")
    parser.add_argument("--max-steps", type=int,
                        help="stop (with a checkpoint) once this many steps in total are done")
    parser.add_argument("--time-limit", type=option_type(parse_duration),
                        help="stop (with a checkpoint) before this much time is spent: 600, 10m, 1.5h")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("recipe (defaults: iPASSR's paper, or --arch's recipe)")
    for name, field in FIELDS.items():
        kind = str(field.type)
        help_text = field.metadata["help"] + f" (default: {getattr(TrainConfig(), name)})"
        if kind == "bool":
            group.add_argument(_option(name), action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(_option(name), default=argparse.SUPPRESS, metavar=name.upper(),
                               help=help_text)
    for old, new in RENAMED.items():  # the names of earlier versions
        group.add_argument(_option(old), dest=new, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=f"= {_option(new)}")
    group.add_argument("--single-view", dest="use_attention", action="store_false",
                       default=argparse.SUPPRESS, help="= --no-attention (Table 1 single input)")
    group.add_argument("--asymmetric", dest="views", action="store_const", const="left",
                       default=argparse.SUPPRESS, help="= --views left")
    return parser


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The run's config from the network's recipe, preset, file and options; and the keys set
    explicitly (for --resume: the recipe's are defaults, not changes)."""
    from ..train.recipes import recipe_config

    layers = [(PRESETS[args.preset] if args.preset else {}, f"preset {args.preset}")]
    if args.config is not None:
        values = read_config_file(args.config)
        layers.append(({RENAMED.get(k, k): v for k, v in values.items()}, str(args.config)))
    layers.append(({k: v for k, v in vars(args).items() if k in FIELDS}, "command line"))
    chosen = {k: v for values, _ in layers for k, v in values.items()}
    config = recipe_config(chosen.get("arch", TrainConfig.arch), chosen.get("model_size"))
    for values, origin in layers:
        config = apply_overrides(config, values, origin)
    return config, {k for values, _ in layers for k in values}


def run(args: argparse.Namespace) -> int:
    from ..train.distributed import shutdown_distributed
    from ..train.data import motorcycle_patches

    config, explicit = resolve_config(args)
    resume = args.resume or (args.auto_resume and (args.out / "checkpoints" / "last.pt").exists())
    source = None
    builtin_data = args.preset == "smoke" or (resume and _saved_without_patches(args.out))
    if config.patches is None and builtin_data:
        scale = config.scale or _saved_scale(args.out) or 2
        source = motorcycle_patches(scale)
        print(f"ipassr: no --patches: {len(source)} patches cut from scikit-image's Motorcycle "
              "pair (the smoke preset's data)", file=sys.stderr)
    if args.max_steps is not None and args.max_steps < 0:
        raise IpassrError(f"--max-steps must be >= 0 (got {args.max_steps})")
    if args.preset == "smoke" and config.validate is None and not resume:
        config = _with_smoke_validation(config, explicit, args.out)
    try:
        return _train(args, config, explicit, source, resume)
    finally:
        shutdown_distributed()


def _with_smoke_validation(config: TrainConfig, explicit: set[str], out: Path) -> TrainConfig:
    """The smoke preset validates on a crop of Motorcycle written into the run folder (without
    the correspondence score unless asked for: it needs the whole pair, and time)."""
    from ..train.smoke import smoke_validation_root

    try:
        root = smoke_validation_root(out / "smoke-validation")
    except IpassrError as exc:  # scikit-image missing
        print(f"ipassr: no smoke validation: {exc}", file=sys.stderr)
        return config
    values = {"validate": str(root)}
    if "validate_correspondence" not in explicit:
        values["validate_correspondence"] = False
    return apply_overrides(config, values, "the smoke preset")


def _saved_config(run: Path) -> dict:
    """The run's saved config.toml as a dict ({} when there is none)."""
    path = run / "config.toml"
    return read_config_file(path) if path.is_file() else {}


def _saved_without_patches(run: Path) -> bool:
    """Whether a run to resume was started without a patch file (the smoke preset's own data)."""
    return "patches" not in _saved_config(run)


def _saved_scale(run: Path) -> int | None:
    return _saved_config(run).get("scale")


def _train(args: argparse.Namespace, config: TrainConfig, explicit: set[str], source,
           resume: bool) -> int:
    """Build (or resume) the run, fit it within the budget, report where things are."""
    from ..train.report import CURVES
    from ..train.trainer import Trainer

    trainer = Trainer(config, args.out, source=source, resume=resume, overrides=explicit,
                      progress=not args.no_progress)
    if trainer.env.is_main:
        for note in trainer.resume_notes:
            print(f"ipassr: {note}", file=sys.stderr)
        print(f"ipassr: training {summary(trainer)} -> {args.out}", file=sys.stderr)
    result = trainer.fit(max_steps=args.max_steps, time_limit=args.time_limit)
    if trainer.env.is_main:
        where = trainer.paths.last_checkpoint
        print(f"ipassr: training curves in {trainer.paths.root / CURVES} (losses and validation "
              f"scores; `ipassr report {trainer.paths.root}` redraws them)", file=sys.stderr)
        if result.status == "finished":
            print(f"ipassr: finished {result.epoch} epochs ({result.global_step} steps); weights in "
                  f"{trainer.paths.weights}", file=sys.stderr)
        else:
            print(f"ipassr: stopped ({result.status}) after {result.global_step} steps "
                  f"({result.epoch} epochs + {trainer.step_in_epoch} steps); checkpoint {where}; "
                  "continue with --resume",
                  file=sys.stderr)
    if result.status == "interrupted":
        return 128 + int(result.signal or 2)
    return 0


def summary(trainer) -> str:
    """One line describing a prepared run."""
    c = trainer.config
    variant = [n for n, on in (("single-view", not c.use_attention), ("asymmetric", c.views == "left"),
                               ("replicated-left", c.replicate_left),
                               ("no-whitening", not c.use_whitening),
                               ("no-valid-mask", not c.use_valid_mask)) if on]
    name = trainer.spec.display_name + (f"-{c.model_size}" if c.model_size else "")
    length = (f"{trainer.total_steps} steps" if c.total_steps else
              f"{trainer.steps_per_epoch} steps/epoch x {c.epochs} epochs")
    return (f"x{c.scale} {name}{' (' + ', '.join(variant) + ')' if variant else ''}: "
            f"{len(trainer.source)} patches, {length}, "
            f"batch {c.batch_size} over {trainer.env.world_size} process(es) on {trainer.device}, "
            f"from epoch {trainer.epoch + 1} step {trainer.step_in_epoch} (global {trainer.global_step})")
