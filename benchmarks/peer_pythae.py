"""pythae 0.1.2 (clementchadebec/benchmark_VAE), trained as its users train it, for the peer benchmark.

Run by ``benchmarks/peers.py`` with the Python of pythae's own virtual environment (it never imports vae_cli):

    python peer_pythae.py --model iwae --epochs 2 --data-root /usr/share/datasets/fashion-mnist

Trains one pythae model with pythae's ``TrainingPipeline`` (its trainer, its DataLoader, its checkpointing: what a
pythae user runs) on Fashion-MNIST binarized by a threshold (pixel > 0.5, the same images ``vae-train
dataset.binarize=static_threshold`` sees), the classic MLP 784-400-20 (ReLU, sigmoid output, Bernoulli / BCE
reconstruction), batch 128, Adam lr 1e-3. Prints one line ``RESULT {json}``: the training time of every epoch (from
the first batch of an epoch to the end of its last optimizer step), the launch-to-trained time, and the test
negative log-likelihood by pythae's own importance-sampling estimator (``model.get_nll``, K samples per image on the
first N test images), or, for a model without a likelihood bound (the autoencoders), the per-pixel squared error
of the reconstruction at the code on those images (what ``vae-eval`` reports for them).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import tempfile
import time

LAUNCHED = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pythae.models import (  # noqa: E402
    AE,
    CIWAE,
    INFOVAE_MMD,
    IWAE,
    PIWAE,
    RAE_GP,
    RAE_L2,
    SVAE,
    VAE,
    VAE_IAF,
    VAMP,
    WAE_MMD,
    Adversarial_AE,
    Adversarial_AE_Config,
    AEConfig,
    BetaTCVAE,
    BetaTCVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    CIWAEConfig,
    FactorVAE,
    FactorVAEConfig,
    INFOVAE_MMD_Config,
    IWAEConfig,
    PIWAEConfig,
    RAE_GP_Config,
    RAE_L2_Config,
    SVAEConfig,
    VAE_IAF_Config,
    VAE_LinNF,
    VAE_LinNF_Config,
    VAEConfig,
    VAMPConfig,
    WAE_MMD_Config,
)
from pythae.models.base.base_utils import ModelOutput  # noqa: E402
from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder  # noqa: E402
from pythae.pipelines import TrainingPipeline  # noqa: E402
from pythae.trainers import (  # noqa: E402
    AdversarialTrainerConfig,
    BaseTrainerConfig,
    CoupledOptimizerTrainerConfig,
)
from pythae.trainers.training_callbacks import TrainingCallback  # noqa: E402
from torch import nn  # noqa: E402

LATENT, HIDDEN, PIXELS = 20, 400, 784


class Encoder(BaseEncoder):
    """784-400-(20, 20), ReLU: the classic example's encoder, as vae-cli's ``model=mlp``."""

    def __init__(self, second_head: str = "log_covariance", second_dim: int = LATENT) -> None:
        BaseEncoder.__init__(self)
        self.body = nn.Sequential(nn.Linear(PIXELS, HIDDEN), nn.ReLU())
        self.mu = nn.Linear(HIDDEN, LATENT)
        self.second = nn.Linear(HIDDEN, second_dim)
        self.second_head = second_head

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.body(x.reshape(x.shape[0], PIXELS))
        return ModelOutput(embedding=self.mu(h), **{self.second_head: self.second(h)})


class Decoder(BaseDecoder):
    """20-400-784, ReLU, sigmoid mean: pythae's BCE reconstruction loss takes probabilities."""

    def __init__(self) -> None:
        BaseDecoder.__init__(self)
        self.layers = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, PIXELS))

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.layers(z)).reshape(z.shape[0], 1, 28, 28))


class LinearDecoder(Decoder):
    """20-400-784 with an unbounded output: the mean of vae-cli's ``likelihood=gaussian``, for pythae's MSE models."""

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.layers(z).reshape(z.shape[0], 1, 28, 28))


class LatentDiscriminator(BaseDiscriminator):
    """vae-cli's AAE discriminator: 20-1000-1000-1, LeakyReLU(0.2); pythae's losses take a probability."""

    def __init__(self) -> None:
        BaseDiscriminator.__init__(self)
        self.layers = nn.Sequential(
            nn.Linear(LATENT, 1000), nn.LeakyReLU(0.2), nn.Linear(1000, 1000), nn.LeakyReLU(0.2), nn.Linear(1000, 1)
        )

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(embedding=torch.sigmoid(self.layers(z)))


def build(name: str):
    """The pythae model for a peer-table row, with the hyperparameters vae-cli's row uses (peers.py keeps the two
    lists side by side)."""
    common = dict(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    mse = {**common, "reconstruction_loss": "mse"}
    encoder = Encoder()
    table = {
        "vae": lambda: VAE(VAEConfig(**common), encoder, Decoder()),
        "beta_vae": lambda: BetaVAE(BetaVAEConfig(**common, beta=4.0), encoder, Decoder()),
        "iwae": lambda: IWAE(IWAEConfig(**common, number_samples=5), encoder, Decoder()),
        "vamp": lambda: VAMP(VAMPConfig(**common, number_components=500), encoder, Decoder()),
        "beta_tcvae": lambda: BetaTCVAE(
            BetaTCVAEConfig(**common, alpha=1.0, beta=6.0, gamma=1.0, use_mss=True), encoder, Decoder()
        ),
        "factor_vae": lambda: FactorVAE(FactorVAEConfig(**common, gamma=10.0), encoder, Decoder()),
        "info_vae": lambda: INFOVAE_MMD(
            # One IMQ scale, C = 2 d (vae-cli's kernel_scale=1); pythae's default sums 7 scales (0.1-10 x C), which
            # weighs its MMD about 7x and is another model.
            INFOVAE_MMD_Config(
                **common, kernel_choice="imq", alpha=0.0, lbd=1000.0, kernel_bandwidth=1.0, scales=[1.0]
            ),
            encoder,
            Decoder(),
        ),
        "iaf": lambda: VAE_IAF(
            VAE_IAF_Config(**common, n_made_blocks=4, n_hidden_in_made=2, hidden_size=320), encoder, Decoder()
        ),
        "planar": lambda: VAE_LinNF(VAE_LinNF_Config(**common, flows=["Planar"] * 10), encoder, Decoder()),
        "svae": lambda: SVAE(SVAEConfig(**common), Encoder("log_concentration", 1), Decoder()),
        "piwae": lambda: PIWAE(
            PIWAEConfig(**common, number_gradient_estimates=2, number_samples=4), encoder, Decoder()
        ),
        "ciwae": lambda: CIWAE(CIWAEConfig(**common, number_samples=8, beta=0.05), encoder, Decoder()),
        # Squared error (pythae's only reconstruction loss for these): vae-cli's Gaussian likelihood with
        # sigma^2 = 1/2, whose -log p(x|z) is |x - mean|^2 + a constant.
        "ae": lambda: AE(AEConfig(**mse), encoder, LinearDecoder()),
        "wae": lambda: WAE_MMD(
            WAE_MMD_Config(**mse, kernel_choice="imq", reg_weight=10.0, kernel_bandwidth=1.0),  # 7 scales both
            encoder,
            LinearDecoder(),
        ),
        # Adam's weight_decay w adds w * theta to the gradient, i.e. (w / 2) |theta|^2 to the loss: vae-cli's
        # decoder_weight 1e-4 times |theta|^2 is pythae's reg_weight 2e-4.
        "rae_l2": lambda: RAE_L2(RAE_L2_Config(**mse, embedding_weight=1.0, reg_weight=2e-4), encoder, LinearDecoder()),
        # pythae's gradient penalty is |d sum(D(E(x))) / dx|^2, through encoder and decoder to the input image;
        # vae-cli's the paper's |dD/dz|_F^2 at the code (a Hutchinson probe): another regularizer, same cost class.
        "rae_gp": lambda: RAE_GP(RAE_GP_Config(**mse, embedding_weight=1.0, reg_weight=1e-4), encoder, LinearDecoder()),
        "aae": lambda: Adversarial_AE(
            Adversarial_AE_Config(
                **common, adversarial_loss_scale=1.0, reconstruction_loss_scale=1.0, deterministic_posterior=True
            ),
            encoder,
            Decoder(),
            LatentDiscriminator(),
        ),
    }
    return table[name]()


def load_split(root: str, prefix: str, limit: int) -> torch.Tensor:
    with gzip.open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    if limit:
        raw = raw[:limit]
    # vae-cli's dataset.binarize=static_threshold: grey level in [0, 1] above 0.5.
    return torch.from_numpy((raw.astype(np.float32) / 255.0 > 0.5).astype(np.float32))


class EpochClock(TrainingCallback):
    """The training time of each epoch: first batch to the end of the last optimizer step (pythae's per-epoch
    model copy and logging that follow are not counted, to its favour)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0
        self._last = 0.0

    def on_train_step_begin(self, training_config, **kwargs) -> None:
        if self._start and self._last:
            self.times.append(self._last - self._start)
        self._start, self._last = time.perf_counter(), 0.0

    def on_train_step_end(self, training_config, **kwargs) -> None:
        self._last = time.perf_counter()

    def on_train_end(self, training_config, **kwargs) -> None:
        if self._last:
            self.times.append(self._last - self._start)


def step_flops(model, x: torch.Tensor) -> float:
    """Matmul/convolution FLOPs of one training step (forward + backward of the loss) on a batch of 128, counted
    by torch's FlopCounterMode, after training (so counting changes nothing that was timed)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    if getattr(model, "model_name", "") == "RAE_GP":
        # RAE_GP differentiates with respect to its input; a leaf there trips FlopCounterMode's module hooks
        # under autograd.grad, so it gets a non-leaf view of the batch (the counted matmuls are the same).
        x = x.clone().requires_grad_() * 1
    counter = FlopCounterMode(display=False)
    with counter:
        out = model({"data": x}, epoch=1, dataset_size=60000, uses_ddp=False)
        out.loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--subset", type=int, default=0, help="first N training images (0: all 60k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nll-k", type=int, default=256)
    p.add_argument("--nll-n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--metric", choices=["nll", "mse"], default="nll", help="mse: models without a bound (peers.py decides)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    train = load_split(args.data_root, "train", args.subset)
    test = load_split(args.data_root, "t10k", args.nll_n)
    model = build(args.model)
    with tempfile.TemporaryDirectory(prefix="pythae-bench-") as out:
        # The trainer pythae's pipeline requires for the model: two optimizers for FactorVAE (VAE, discriminator)
        # and PIWAE (encoder, decoder: its two gradient estimators), one otherwise.
        # Batch 128, no checkpoints kept but the final model, the CPU (pythae's own defaults otherwise).
        shared = dict(
            output_dir=out,
            num_epochs=args.epochs,
            per_device_train_batch_size=128,
            keep_best_on_train=True,
            no_cuda=True,
            seed=args.seed,
        )
        if args.model in ("piwae", "rae_l2"):  # rae_l2: the pipeline sets the decoder's weight decay
            config = CoupledOptimizerTrainerConfig(**shared, encoder_learning_rate=1e-3, decoder_learning_rate=1e-3)
        elif args.model in ("factor_vae", "aae"):
            config = AdversarialTrainerConfig(
                **shared,
                autoencoder_learning_rate=1e-3,
                discriminator_learning_rate=1e-4,
                discriminator_optimizer_params={"betas": (0.5, 0.9)},
            )
        else:
            config = BaseTrainerConfig(**shared, learning_rate=1e-3)
        clock = EpochClock()
        TrainingPipeline(model=model, training_config=config)(train_data=train, callbacks=[clock])
        trained = time.time()
    flops = step_flops(model, train[:128])
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        if args.metric == "mse":
            # vae-eval's "mean squared error (per pixel)": the decoder's mean at z = the code, in [0, 1].
            recon = model.decoder(model.encoder(test).embedding).reconstruction.clamp(0, 1)
            nll = float((recon - test).pow(2).mean())
        else:
            nll = -float(model.get_nll(test, n_samples=args.nll_k, batch_size=args.nll_k))
    eval_s = time.perf_counter() - t0
    result = {
        "epoch_times": clock.times,
        "n_train": len(train),
        "launch_to_trained_s": trained - LAUNCHED,
        "test_nll": nll,  # the per-pixel MSE with --metric mse
        "nll_k": args.nll_k,
        "nll_n": len(test),
        "eval_s": eval_s,
        "step_flops": flops,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
