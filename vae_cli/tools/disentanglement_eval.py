"""``vae-eval RUN --disentanglement``: a run's representation scored against its dataset's ground-truth factors.

The run's own ``disentanglement`` config (metrics, sample sizes, seed) with ``--set KEY=VALUE`` changes; the result
goes into eval.json's ``disentanglement`` entry (scores, the matrices behind them, the config used) and the run's
TensorBoard (``disentanglement/*`` at the checkpoint's step). Also used by ``vae-compare --disentanglement``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae_cli.tools.eval_cli import eval_device, write_eval_json

if TYPE_CHECKING:
    from vae_cli.config import DisentanglementConfig
    from vae_cli.disentanglement.suite import DisentanglementResult
    from vae_cli.tools.run_loader import LoadedRun


def disentanglement_config(run_cfg: Any, overrides: list[str]) -> DisentanglementConfig:
    """The run's ``disentanglement`` node with ``KEY=VALUE`` overrides, typed and checked."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from vae_cli.config import DisentanglementConfig
    from vae_cli.config.validate import check_disentanglement_node
    from vae_cli.errors import ConfigError

    node = OmegaConf.merge(OmegaConf.structured(DisentanglementConfig), run_cfg.get("disentanglement") or {})
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"--set takes KEY=VALUE (e.g. --set dci.num_train=2000); got {bad[0]!r}.")
    try:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist([o.removeprefix("disentanglement.") for o in overrides]))
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"--set {' '.join(overrides)}: {str(exc).splitlines()[0]}. The keys are those of the disentanglement "
            f"config (metrics, seed, mig.num_bins, dci.num_train, sap.continuous, factor_vae.batch_size, ...)."
        ) from None
    problems: list[str] = []
    check_disentanglement_node(node, lambda ok, message: ok or problems.append(message))
    if problems:
        raise ConfigError(" ".join(problems))
    return OmegaConf.to_object(node)


def disentanglement_run(
    path: str | Path,
    data_root: str | None = None,
    overrides: list[str] | None = None,
    which: str = "best",
    device: str = "auto",
    write: bool = True,
) -> tuple[DisentanglementResult, LoadedRun]:
    """Score one run's representation on its dataset's factors; unless ``write`` is False, merge the result into
    ``RUN/eval.json`` (entry ``disentanglement``) and log ``disentanglement/*`` to the run's TensorBoard."""
    from omegaconf import OmegaConf

    from vae_cli.disentanglement.representation import encoder_mean
    from vae_cli.disentanglement.suite import score
    from vae_cli.errors import VaeCliError
    from vae_cli.factors.from_config import ground_truth_for
    from vae_cli.tools.run_loader import load_run

    dev = eval_device(device)
    run = load_run(path, which=which, device=dev)
    cfg = disentanglement_config(run.cfg, overrides or [])
    data_cfg = OmegaConf.merge(run.cfg.dataset, {})
    if data_root is not None:
        data_cfg.root = str(Path(data_root).expanduser())
    represent = encoder_mean(run.model)
    result = score(ground_truth_for(data_cfg), represent, cfg)
    if write:
        record = {
            "scores": result.scores,
            "details": result.details,
            "seconds": result.seconds,
            "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
            "checkpoint": str(run.checkpoint_path),
            "epoch": run.epoch,
            "step": run.step,
            "dataset": run.cfg.dataset.name,
            "device": str(dev),
            "representation": "mean of q(z|x)",
        }
        try:
            from vae_cli.training.tracking import Tracker

            tracker = Tracker(run.run_dir, enabled=run.cfg.logger.tensorboard, save_png=False)
            tracker.scalars(result.scores, run.step)
            tracker.close()
            write_eval_json(run.run_dir / "eval.json", "disentanglement", record)
        except OSError as exc:
            raise VaeCliError(
                f"Could not write the results into {run.run_dir}: {exc.strerror or exc}. eval.json is replaced whole "
                f"or not at all. Free disk space or fix the folder's permissions, or print only with --no-write."
            ) from exc
    return result, run


def format_disentanglement(result: DisentanglementResult, run: LoadedRun) -> str:
    names = {
        "disentanglement/mig": "MIG",
        "disentanglement/dci_disentanglement": "DCI disentanglement",
        "disentanglement/dci_completeness": "DCI completeness",
        "disentanglement/dci_informativeness_test": "DCI informativeness (test acc.)",
        "disentanglement/sap": "SAP",
        "disentanglement/factor_vae_score": "FactorVAE score (eval acc.)",
        "disentanglement/beta_vae_score": "BetaVAE score (eval acc.)",
    }
    seconds = sum(result.seconds.values())
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"disentanglement on '{run.cfg.dataset.name}' (representation: mean of q(z|x)), {seconds:.1f} s",
        "",
        f"  {'metric':<34}{'value':>8}",
        *(f"  {names.get(k, k):<34}{v:>8.3f}" for k, v in result.scores.items()),
    ]
    mig_detail = result.details.get("mig")
    if mig_detail is not None:
        gaps = ", ".join(f"{v:.2f}" for v in mig_detail["per_factor"])
        lines += ["", f"MIG per factor: {gaps}"]
    return "\n".join(lines)
