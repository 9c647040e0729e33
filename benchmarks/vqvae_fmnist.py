"""VQ-VAE on Fashion-MNIST, both stages, measured: reconstructions and codebook perplexity, the PixelCNN prior's NLL
of the test codes, the bound on -log p(x), and a picture of the prior's samples next to uniform-code "samples".

    python benchmarks/vqvae_fmnist.py --out /tmp/vae-vq --vq-epochs 5 --prior-epochs 5 --picture docs/images/vqvae_samples.png

Stage 1: `vae-train model=vqvae` on grey 8-bit Fashion-MNIST with a discretized logistic mixture (a probability of
the 8-bit values, so the bound is in comparable bits/dim); stage 2: `vae-train prior=pixelcnn prior.vqvae=RUN`.
Resumable (finished runs are kept). Prints a markdown table and writes the picture.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

VQ = [
    "model=vqvae",
    "dataset=fashion_mnist",
    "likelihood=logistic_mixture",
    "likelihood.components=5",
    "model.widths=[16,32,64]",
    "model.blocks=1",
    "model.codebook_size=512",
    "model.code_dim=32",
    "optim.lr=0.002",
]
PRIOR = ["prior=pixelcnn", "prior.channels=64", "prior.layers=8", "optim.lr=0.002"]
COMMON = ["trainer.embedding=false", "trainer.progress=none", "trainer.nll_iw_every_epochs=0"]


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def train(run_dir: Path, args: list[str]) -> None:
    if not (run_dir / "metrics.json").is_file():
        run([tool("vae-train"), *args, *COMMON, f"hydra.run.dir={run_dir}"])


def labelled(path: Path, label: str) -> Image.Image:
    image = Image.open(path).convert("RGB")
    canvas = Image.new("RGB", (image.width, image.height + 18), "white")
    canvas.paste(image, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), label, fill="black")
    return canvas


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/vae-vq"))
    p.add_argument("--vq-epochs", type=int, default=5)
    p.add_argument("--prior-epochs", type=int, default=5)
    p.add_argument("--picture", type=Path, help="also write the samples-vs-uniform picture here")
    args = p.parse_args()
    vq, prior = args.out / "vqvae", args.out / "prior"
    train(vq, [*VQ, f"trainer.epochs={args.vq_epochs}"])
    train(prior, [*PRIOR, f"prior.vqvae={vq}", f"trainer.epochs={args.prior_epochs}"])
    results = {}
    for name, run_dir in (("vqvae", vq), ("prior", prior)):
        run([tool("vae-eval"), str(run_dir)])
        results[name] = json.loads((run_dir / "eval.json").read_text())["test"]
    pictures = args.out / "pictures"
    run([tool("vae-sample"), str(prior), "--out", str(pictures / "prior"), "--n", "64", "--temperature", "1.0"])
    run([tool("vae-sample"), str(vq), "--out", str(pictures / "uniform"), "--n", "64", "--uniform-codes"])
    panels = [
        labelled(pictures / "prior" / "reconstructions.png", "test images / reconstructions"),
        labelled(pictures / "prior" / "samples.png", "PixelCNN prior: samples"),
        labelled(pictures / "uniform" / "samples.png", "uniform codes"),
    ]
    height = max(panel.height for panel in panels)
    picture = Image.new("RGB", (sum(panel.width for panel in panels) + 16 * (len(panels) - 1), height), "white")
    x = 0
    for panel in panels:
        picture.paste(panel, (x, 0))
        x += panel.width + 16
    picture.save(args.out / "samples_vs_uniform.png")
    if args.picture:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        picture.save(args.picture)
    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in (("vqvae", vq), ("prior", prior))}
    (args.out / "results.json").write_text(json.dumps({"eval": results, "metrics": metrics}, indent=2))
    vq_eval, prior_eval = results["vqvae"], results["prior"]
    cb = vq_eval["codebook"]
    grid = cb["codebook_size"]
    print(f"\nFashion-MNIST test split ({vq_eval['num_images']} images), 8-bit, 7x7 codes of {grid}\n")
    print(
        "| stage | epochs | train (min) | reconstruction −log p(x\\|c) (nats) | −log p(codes) (nats) | −log p(x) ≤ (nats) | bits/dim ≤ | perplexity | codes used |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, e in (("VQ-VAE, uniform prior", vq_eval), ("+ PixelCNN prior", prior_eval)):
        m = metrics["vqvae" if e is vq_eval else "prior"]
        c = e["codebook"]
        print(
            f"| {name} | {m['epochs']} | {m['wall_time_s'] / 60:.1f} | {e['recon']:.1f} | {e['kl']:.1f} | "
            f"{e['nll_iw']:.1f} | {e['bits_per_dim']:.3f} | {c['perplexity']:.0f} | {c['codes_used']} / {c['codebook_size']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
