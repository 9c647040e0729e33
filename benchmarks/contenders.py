"""Hand-written trainers the speed benchmark runs beside ``vae-train``, each in its own process.

``python benchmarks/contenders.py classic|bare [options]`` trains on Fashion-MNIST and prints one line
``RESULT {json}`` with the per-epoch training times, the final test loss (per-image -ELBO, nats) and peak memory.

- ``classic``: the PyTorch VAE example's design, kept as it is: torchvision ``FashionMNIST`` +
  ``transforms.ToTensor()`` + ``DataLoader(batch_size=128, shuffle=True)`` (per-sample PIL), a sigmoid decoder
  with ``F.binary_cross_entropy(reduction='sum')`` + KL, ``loss.item()`` every step, default Adam.
- ``bare``: the floor of eager PyTorch: the same model as ``vae-train`` (``vae_cli.models.vae``) on preloaded float
  tensors, sliced by a ``randperm``, no per-step host sync. Flags switch on one speed feature at a time
  (``--fused-adam``, ``--fast-bce``, ``--bf16``, ``--compile``, ``--malloc``), so the ablation says what each
  gives.

Both read the same files as ``vae-train`` (``<data-root>/FashionMNIST/raw``, staged by the benchmark).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SHAPE = (1, 28, 28)


# ----- the classic example ----------------------------------------------------------------------------------
class ClassicMLP(nn.Module):
    """The PyTorch example's VAE, verbatim in structure: 784-400-(20, 20), sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


class ClassicConv(nn.Module):
    """The same example design with vae-cli's conv architecture (two stride-2 4x4 convs, mirrored decoder)."""

    def __init__(self, channels: tuple[int, int] = (32, 64), latent: int = 20) -> None:
        super().__init__()
        c1, c2 = channels
        self.enc = nn.Sequential(
            nn.Conv2d(1, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(), nn.Flatten()
        )
        self.head = nn.Linear(c2 * 7 * 7, 2 * latent)
        self.fc = nn.Sequential(nn.Linear(latent, c2 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (c2, 7, 7)))
        self.dec = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c1, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.enc(x)).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.dec(self.fc(z))).view(-1, 784), mu, logvar


def classic_loss(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_classic(args: argparse.Namespace, device: torch.device) -> dict:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.ToTensor()
    train_set = datasets.FashionMNIST(args.data_root, train=True, download=False, transform=tf)
    test_set = datasets.FashionMNIST(args.data_root, train=False, download=False, transform=tf)
    if args.subset:
        train_set = Subset(train_set, range(args.subset))
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, **kwargs)
    test_loader = DataLoader(test_set, batch_size=args.batch_size, shuffle=False, **kwargs)
    model = (ClassicConv() if args.model == "conv" else ClassicMLP()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, first_step = [], None
    for _ in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        for data, _ in train_loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = classic_loss(recon, data, mu, logvar)
            loss.backward()
            loss.item()  # the example accumulates train_loss += loss.item(): a host sync every step
            optimizer.step()
            first_step = first_step or time.time()
        times.append(time.perf_counter() - t0)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            data = data.to(device)
            recon, mu, logvar = model(data)
            total += classic_loss(recon, data, mu, logvar).item()
    return {
        "epoch_times": times,
        "test_loss": total / len(test_set),
        "n_train": len(train_set),
        "first_step": first_step,
    }


# ----- the bare loop --------------------------------------------------------------------------------------
def load_uint8(root: str, train: bool) -> torch.Tensor:
    from torchvision import datasets

    return datasets.FashionMNIST(root, train=train, download=False).data.unsqueeze(1).contiguous()


def run_bare(args: argparse.Namespace, device: torch.device) -> dict:
    from omegaconf import OmegaConf

    from vae_cli.config.catalog import ARCHITECTURES
    from vae_cli.config.likelihoods import LikelihoodConfig
    from vae_cli.config.priors import PriorConfig
    from vae_cli.models.build import build_model

    train = load_uint8(args.data_root, True)
    if args.subset:
        train = train[: args.subset]
    x_all = train.float().div_(255).to(device)  # preloaded once: no per-sample work, no per-epoch copies
    test = load_uint8(args.data_root, False).float().div_(255).to(device)
    parts = {"model": ARCHITECTURES[args.model].schema(), "prior": PriorConfig(), "likelihood": LikelihoodConfig()}
    model = build_model(OmegaConf.create(parts), IMAGE_SHAPE).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if args.fused_adam else None)

    def textbook_loss(x: torch.Tensor, params: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(params.float(), x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar.float() - mu.float().pow(2) - logvar.float().exp())
        return (bce + kld) / x.shape[0]

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            out = model(x)
        if args.fast_bce:  # vae-train's likelihood (hand-written BCE) and closed-form KL
            return -model.likelihood.log_prob(x, out.params).mean() + model.prior.kl(out.mu, out.logvar).mean()
        return textbook_loss(x, out.params, out.mu, out.logvar)

    step_loss: Callable[[torch.Tensor], torch.Tensor] = torch.compile(loss_of) if args.compile else loss_of
    n, bs = x_all.shape[0], args.batch_size
    times, first_step = [], None
    for _ in range(args.epochs):
        model.train()
        running = torch.zeros((), device=device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for i in range(0, n, bs):
            x = x_all[perm[i : i + bs]]
            # Partial last batch eagerly, so a compiled function never recompiles for it.
            loss = step_loss(x) if x.shape[0] == bs else loss_of(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach()
            first_step = first_step or time.time()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    model.eval()
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for i in range(0, test.shape[0], 1000):
            x = test[i : i + 1000]
            out = model(x)
            total += textbook_loss(x, out.params, out.mu, out.logvar) * x.shape[0]
    return {
        "epoch_times": times,
        "test_loss": total.item() / test.shape[0],
        "n_train": n,
        "first_step": first_step,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["classic", "bare"])
    p.add_argument("--data-root", required=True)
    p.add_argument("--model", choices=["mlp", "conv"], default="mlp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--subset", type=int, default=0, help="train on the first N images only (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fused-adam", action="store_true")
    p.add_argument("--fast-bce", action="store_true", help="vae-cli's loss (hand-written BCE backward)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--malloc", action="store_true", help="vae-train's malloc thresholds (vae_cli/allocator.py)")
    args = p.parse_args()
    if args.malloc:
        from vae_cli.process.allocator import keep_freed_memory_for_reuse

        keep_freed_memory_for_reuse()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    result = (run_classic if args.kind == "classic" else run_bare)(args, device)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
