"""One posterior's training step against its version at another commit, alternating in one process.

    python benchmarks/posterior_ab.py --rev e323a7b --module planar --cls PlanarPosterior \\
        -- posterior=planar posterior.flows=10
    python benchmarks/posterior_ab.py --rev e323a7b --module vmf --cls VMFPosterior \\
        -- posterior=vmf prior=uniform_sphere
    python benchmarks/posterior_ab.py --rev e323a7b --module vmf --cls VMFPosterior --from-run outputs/RUN \\
        -- posterior=vmf prior=uniform_sphere            # at a trained model's weights, on its test images

Why in one process: this machine's speed moves by up to 50% within minutes, so two processes, or two runs of a
benchmark suite, cannot resolve a 10-20% change of one part of the step. Here the model, the objective, the optimizer
and the batch are built once (``vae-train``'s own builders and ``TrainStep``, at the config the overrides make); the
posterior (a part without parameters) is switched between the working tree's class and the class of
``vae_cli/models/posteriors/<module>.py`` at ``--rev`` (read with ``git show``, imported beside the working tree's
modules) by swapping the object's class, and blocks of steps of the two alternate. Prints each version's median ms
per step and the old/new ratio with the spread of the pairs. The batch is a fixed random binary image batch (the
step's cost does not depend on the pixels); the step uses the run's precision (``trainer.precision=auto``: bf16 on
a CPU with native bf16 matmuls).

``--from-run DIR``: the model's weights from DIR's ``checkpoints/last.pt`` (a run of the same overrides) and the
batch its first 128 test images (binarized at 0.5), with the learning rate 0 so the weights stay the run's: for a
posterior whose cost depends on what the encoder outputs (the vMF's rejection sampler loops longer at the
concentrations a trained S-VAE has than at initialization).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]


def refuse(message: str) -> None:
    print(f"posterior_ab.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def old_class(rev: str, module: str, cls: str) -> type:
    path_in_repo = f"vae_cli/models/posteriors/{module}.py"
    shown = subprocess.run(["git", "show", f"{rev}:{path_in_repo}"], cwd=REPO, capture_output=True, text=True)
    if shown.returncode != 0:
        refuse(
            f"git cannot show {path_in_repo} at {rev!r} ({shown.stderr.strip()}). Give a commit of this repository "
            "(--rev) and a module under vae_cli/models/posteriors/ that exists there (--module, without .py)."
        )
    source = shown.stdout
    path = Path(tempfile.mkdtemp(prefix="posterior-ab-")) / f"old_{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"old_{module}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    if not isinstance(getattr(loaded, cls, None), type):
        refuse(f"{path_in_repo} at {rev} has no class {cls!r} (--cls): give the posterior class the module defines.")
    return getattr(loaded, cls)


def compose_train_config(overrides: list[str]):
    """vae-train's composed config for ``overrides`` (unvalidated: the benchmarks time steps vae-train may refuse)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from vae_cli.config.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        try:
            return compose(config_name="train", overrides=overrides)
        except HydraException as e:
            refuse(f"the overrides {overrides} do not make a vae-train config: {e}. Options go before --.")


def build_step(overrides: list[str]):
    from vae_cli.training.optim import build_optimizer
    from vae_cli.training.session import build_model_and_objective
    from vae_cli.training.step import TrainStep

    cfg = compose_train_config(overrides)
    data = SimpleNamespace(
        image_shape=(1, 28, 28), train=torch.zeros(60000, 1, 1, 1), num_classes=10, name="fashion_mnist", streamed=False
    )
    model, objective = build_model_and_objective(cfg, data, torch.device("cpu"))
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = build_optimizer(cfg.optim, params, fused=True)
    return model, TrainStep(model, objective, optimizer, cfg.trainer, torch.device("cpu"))


def trained_state(model: torch.nn.Module, step, run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``run_dir``'s last weights into ``model``, set the learning rate to 0 (the weights stay the run's) and
    return its first 128 test images, binarized at 0.5, and their labels."""
    from vae_cli.process.errors import VaeCliError
    from vae_cli.runs.loaded import load_run, load_split

    try:
        run = load_run(run_dir, which="last")
    except VaeCliError as exc:
        refuse(f"--from-run: {exc}")
    try:
        model.load_state_dict(run.model.state_dict())
    except RuntimeError as exc:
        refuse(
            f"--from-run: {run.checkpoint_path} holds another model than these overrides build "
            f"({str(exc).splitlines()[0]}). Give the overrides the run was trained with (after --)."
        )
    for group in step.optimizer.param_groups:
        group["lr"] = 0.0
    split = load_split(run.cfg, "test")
    images = split.images[:128]
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    print(
        f"weights: {run.checkpoint_path} (epoch {run.epoch}, step {run.step}), learning rate 0; "
        f"batch: its first {images.shape[0]} test images",
        flush=True,
    )
    return (images > 0.5).float(), split.labels[:128].long()


def alternate_blocks(
    step: Callable[..., object],
    x: torch.Tensor,
    y: torch.Tensor,
    use: Callable[[str], None],
    names: tuple[str, str],
    blocks: int,
    steps: int,
    warmup: int,
    settle: int,
) -> dict[str, list[float]]:
    """ms per step of ``step`` in ``blocks`` blocks of ``steps`` steps per version, the two versions (switched to by
    ``use(name)``) alternating a b b a a b ... after ``warmup`` steps of each; ``settle`` untimed steps start a block."""
    for name in names:
        use(name)
        for i in range(warmup):
            step(x, y, i)
    times: dict[str, list[float]] = {name: [] for name in names}
    for block in range(2 * blocks):
        name = names[(block + block // 2) % 2]
        use(name)
        for i in range(settle):
            step(x, y, i)
        start = time.perf_counter()
        for i in range(steps):
            step(x, y, i)
        times[name].append((time.perf_counter() - start) / steps * 1e3)
    return times


def middle_half(a: list[float], b: list[float]) -> tuple[float, float]:
    """The middle half of the blocks' pairwise ratios a / b (the spread of one process's comparison)."""
    pairs = sorted(x / y for x, y in zip(a, b, strict=True))
    quarter = len(pairs) // 4
    return pairs[quarter], pairs[-quarter - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", required=True, help="the commit whose posterior module is the baseline")
    p.add_argument("--module", required=True, help="vae_cli/models/posteriors/<module>.py")
    p.add_argument("--cls", required=True, help="the posterior class in it")
    p.add_argument("--blocks", type=int, default=12, help="blocks per version (alternating)")
    p.add_argument("--steps", type=int, default=100, help="steps per block")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--from-run", type=Path, help="a trained run of these overrides: its weights and test images")
    p.add_argument("overrides", nargs="*", help="vae-train overrides (after --)")
    args = p.parse_args()
    if args.threads != torch.get_num_threads():  # as vae-train, which sets a count only when asked to:
        torch.set_num_threads(args.threads)  # the call also makes MKL's exp/log/sqrt use every thread
    from vae_cli.process import allocator

    allocator.keep_freed_memory_for_reuse()  # vae-train's malloc settings
    model, step = build_step(args.overrides)
    versions = {"old": old_class(args.rev, args.module, args.cls), "new": type(model.posterior)}
    if versions["new"].__name__ != args.cls:
        refuse(
            f"the overrides build a {versions['new'].__name__}, not a {args.cls}: give the overrides that select "
            f"this posterior (e.g. -- posterior={args.module})."
        )
    x = (torch.rand(128, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    y = torch.zeros(128, dtype=torch.long)
    if args.from_run is not None:
        x, y = trained_state(model, step, args.from_run)

    def use(name: str) -> None:
        model.posterior.__class__ = versions[name]

    times = alternate_blocks(step, x, y, use, ("old", "new"), args.blocks, args.steps, warmup=30, settle=5)
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    low, high = middle_half(times["old"], times["new"])
    print(
        f"{args.module}.{args.cls} ({' '.join(args.overrides)}), step {'bf16' if step.bf16 else 'fp32'}, "
        f"{args.blocks} blocks x {args.steps} steps each: {args.rev} {old:.3f} ms, working tree {new:.3f} ms, "
        f"{args.rev}/new {old / new:.3f}x (pairs, middle half: {low:.2f}-{high:.2f}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
