"""The enumerations of the config schemas (Enums rather than ``Literal``: hydra-core 1.3 needs omegaconf < 2.4,
which does not support ``Literal``)."""

from __future__ import annotations

from enum import Enum


class OptimizerName(str, Enum):
    adam = "adam"
    adamw = "adamw"


class Schedule(str, Enum):
    none = "none"
    cosine = "cosine"


class Precision(str, Enum):
    # auto: bf16 where the device multiplies in bf16 natively (CUDA; CPUs with AMX or AVX512-BF16), else fp32.
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class CpuWait(str, Enum):
    # The values of vae_cli/process/cpu_threads.py (AUTO, SPIN, SLEEP), which decides the OpenMP settings.
    auto = "auto"  # sleep if the machine is already busy when the run starts, else spin briefly (bounded)
    spin = "spin"  # OMP_WAIT_POLICY=ACTIVE: fastest on an idle machine that stays idle
    sleep = "sleep"  # OMP_WAIT_POLICY=PASSIVE: no collapse when cores are oversubscribed


class IAFStep(str, Enum):
    # gated: sigma = sigmoid(s + 1), z <- sigma z + (1 - sigma) m (Kingma et al. 2016, eq. 11-14; contracts only).
    # affine: z <- z exp(s) + m (the authors' code, MAF, pythae, zuko): scales either way.
    gated = "gated"
    affine = "affine"


class NanPolicy(str, Enum):
    stop = "stop"  # stop the run, keep the last good checkpoint
    skip = "skip"  # drop the batch's update and go on
    rollback = "rollback"  # reload the last checkpoint and go on with a lower learning rate


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Binarize(str, Enum):
    # none: grey levels in [0, 1]. dynamic: a fresh Bernoulli sample of every training pixel each epoch (val/test
    # get one fixed seeded sample). static_threshold: pixel > dataset.threshold, once. static_sample: one seeded
    # Bernoulli sample of every image, fixed for the whole run.
    none = "none"
    dynamic = "dynamic"
    static_threshold = "static_threshold"
    static_sample = "static_sample"


class ResizeMode(str, Enum):
    # How an image of another shape becomes image_size x image_size (image_folder, celeba).
    center_crop = "center_crop"  # scale the shorter side to image_size, crop the centre (keeps aspect ratio)
    stretch = "stretch"  # scale both sides to image_size (distorts the aspect ratio, keeps everything)
    pad = "pad"  # scale the longer side to image_size, pad with dataset.background (letterbox)


class SubsetMode(str, Enum):
    first = "first"
    random = "random"


class EmnistSplit(str, Enum):
    byclass = "byclass"
    bymerge = "bymerge"
    balanced = "balanced"
    letters = "letters"
    digits = "digits"
    mnist = "mnist"


class TrainSplit(str, Enum):
    # Which official split the model trains on (and carves its validation images from). test: for a copy of a
    # dataset that holds only its test files; the run then has no held-out test numbers.
    train = "train"
    test = "test"
