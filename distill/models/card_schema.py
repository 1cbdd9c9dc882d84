"""What a `.distill` file's metadata may hold, checked before anything is built from it.

A checksum is not a signature: anyone can write a file whose checksum matches. So every
field distill reads from a card is checked here, in plain Python and without torch: types,
ranges, finite numbers, the fields that must agree with each other, and the size the
configs imply (`model_elements`, computed before anything is allocated). `check_tensors`
then holds the weights' names, dtypes and shapes to what the configs build. Every refusal
is a ModelFileError naming the field: "config.mel.n_fft: must be a finite integer from 16
to 16384, got 1000000000.0" (the checks it is composed of: models/card_checks.py).

Configs are closed: every field is required (a missing one would be filled with today's
default, which may build another model than the one trained) and unknown fields are
refused. The other sections (dataset, training, curves) describe a run: the fields distill
reads are checked, others are left alone. Metrics may be NaN or infinite, as a diverged
loss is; config values never.

The ranges are generous: far past the sizes distill picks or its forms offer, so that any
model a user trains loads, and tight enough that no card makes distill allocate more than
MAX_MODEL_ELEMENTS numbers.
"""

from __future__ import annotations

import math
from typing import Any

from distill.models.card_checks import (
    MAX_COUNT,
    boolean,
    integer,
    list_of,
    mapping_of,
    metric,
    number,
    optional,
    power_of_two,
    record,
    refuse,
    text,
)
from distill.models.config import (
    MAX_CODEBOOK_SIZE,
    MAX_COMMITMENT_WEIGHT,
    MAX_RVQ_LEVELS,
    MIN_CODEBOOK_SIZE,
    MIN_RVQ_LEVELS,
    STAGE_DILATIONS,
)
from distill.models.model_file import MAX_MODEL_FILE_BYTES, ModelFileError

MODEL_TYPE = "distill-model"  # the card's "type": a model, not some other distill file
MAX_PRIOR_HIDDEN_SIZE = 2048
MAX_PRIOR_LAYERS = 24
MAX_PRIOR_HEADS = 32
MAX_CHANNELS = 4096  # the VQ-VAE's widths: hidden, latent and code dimensions
# As many float32 numbers as the largest model file the library imports holds.
MAX_MODEL_ELEMENTS = MAX_MODEL_FILE_BYTES // 4
TENSOR_PREFIXES = ("vqvae.", "prior.", "prior_codes.")

COUNT = integer(0, MAX_COUNT)

MEL = record(
    {
        "sample_rate": integer(1000, 384_000),
        "n_fft": integer(16, 16384),
        "hop_length": integer(1, 8192),
        "n_mels": integer(1, 512),
        "f_min": number(0, 192_000),
        "f_max": optional(number(0, 192_000)),
        "log_floor": number(1e-12, 1),
    },
    closed=True,
)

VQVAE = record(
    {
        "mel": MEL,
        "window_frames": integer(1, 8192),
        "hidden_channels": integer(1, MAX_CHANNELS),
        "latent_dim": integer(1, MAX_CHANNELS),
        "downsample": power_of_two(1024),
        "rvq_levels": integer(MIN_RVQ_LEVELS, MAX_RVQ_LEVELS),
        "codebook_size": integer(MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE),
        "codebook_dim": integer(1, MAX_CHANNELS),
        "commitment_weight": number(0, MAX_COMMITMENT_WEIGHT),
        "ema_decay": number(0, 1),
        "dead_code_threshold": number(0, 1e6),
        "kmeans_iters": integer(1, 1000),
    },
    {"decoder_stage_channels": integer(0, MAX_CHANNELS)},  # absent before format 2
    closed=True,
)

PRIOR_CONFIG = record(
    {
        "rvq_levels": integer(MIN_RVQ_LEVELS, MAX_RVQ_LEVELS),
        "codebook_size": integer(MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE),
        "context_steps": integer(1, 4096),
        "hidden_size": integer(1, MAX_PRIOR_HIDDEN_SIZE),
        "layers": integer(1, MAX_PRIOR_LAYERS),
        "heads": integer(1, MAX_PRIOR_HEADS),
        "dropout": number(0, 1, below=True),
    },
    closed=True,
)

CURVES = mapping_of(list_of(metric))

HEALTH = list_of(
    record(
        {
            "level": integer(1, MAX_RVQ_LEVELS),
            "codebook_size": integer(MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE),
            "utilization": number(0, 1),
            "perplexity": metric,
            "dead_codes": COUNT,
            "error_reduction": metric,
        },
        {"vectors": COUNT},
        closed=True,  # read back as LevelHealth(**entry)
    ),
    most=MAX_RVQ_LEVELS,
)

SHARE = number(0, 1)
MAYBE = optional(metric)  # a figure without data is None
GENERATION = record(  # a GenerationMeasured, read back as one
    {
        "epoch": COUNT,
        "sampled_clips": COUNT,
        "kad": MAYBE,
        "kad_low": MAYBE,
        "kad_high": MAYBE,
        "kad_copies": MAYBE,
        "kad_noise": MAYBE,
        "split_floor": MAYBE,
        "precision": SHARE,
        "coverage": SHARE,
        "coverage_low": MAYBE,
        "coverage_high": MAYBE,
        "coverage_copies": SHARE,
        "coverage_noise": SHARE,
        "copy_share": SHARE,
        "novelty": MAYBE,
        "silent_share": SHARE,
        "onset_share": metric,
        "onset_real": metric,
        "copy_share_bound": SHARE,
        "seconds": metric,
    },
    closed=False,
)

PRIOR = record(
    {
        "config": PRIOR_CONFIG,
        "dataset": record(
            {"path": text, "files": COUNT},
            {
                "fingerprint": text,
                "train_files": COUNT,
                "val_files": COUNT,
                "median_seconds": metric,
                "one_shot": boolean,
            },
            closed=False,
        ),  # fmt: skip
        "training_files": list_of(text),
        "seconds_per_step": number(1e-9, 1e9),
        "curves": CURVES,
        "training": record(
            {
                "epochs": COUNT,
                "best_epoch": COUNT,
                "best_val_perplexity": metric,
                "memorization_threshold": metric,
            },
            {
                "best_val_loss": metric,
                "copy_rate": number(0, 1),
                "memorization_warnings": list_of(
                    record({"epoch": COUNT, "message": text}, closed=False)
                ),
                "generation": GENERATION,
            },
            closed=False,
        ),  # fmt: skip
    },
    {"run_id": optional(text), "created": optional(text)},
    closed=False,
)

CARD = record(
    {
        "type": text,
        "config": VQVAE,
        "dataset": record(
            {"path": text, "fingerprint": text, "files": COUNT, "seconds": number(0, 1e12)},
            {"skipped": COUNT},
            closed=False,
        ),
        "health": HEALTH,
        "curves": CURVES,
        "training": record(
            {"epochs": COUNT, "best_epoch": COUNT, "best_val_loss": metric},
            {"val_mel_error": metric, "val_fraction": number(0, 1), "seed": integer(0, 2**63)},
            closed=False,
        ),
    },
    {
        "name": text,
        "created": optional(text),
        "run_id": optional(text),
        "prior": PRIOR,
        "decoder_stage": record(  # how the decoder stage trained (DecoderStageTrained)
            {
                "steps": COUNT,
                "train_loss": metric,
                "val_loss_baseline": metric,
                "val_loss": metric,
                "val_convergence_baseline": metric,
                "val_convergence": metric,
                "seconds": metric,
            },
            closed=False,
        ),
    },
    closed=False,
)


def check_card(card: dict[str, Any]) -> None:
    """Refuse a card that is not what distill writes, naming the first bad field (a card
    of an older distill is upgraded to today's names before: models/card.py).

    Types and ranges first, then the fields that must agree, then the size: the
    arithmetic of `model_elements` only ever sees numbers already in range.
    """
    if card.get("type") != MODEL_TYPE:
        raise ModelFileError(f"a distill file but not a model (type {card.get('type')!r})")
    CARD(card, "")
    config = card["config"]
    _check_mel(config["mel"], "config.mel")
    if config["window_frames"] % config["downsample"]:
        refuse("config.window_frames", f"must be a multiple of downsample "
                f"({config['downsample']})", config["window_frames"])  # fmt: skip
    prior = card.get("prior")
    if prior is not None:
        _check_prior(prior, config)
    _check_size(config, None if prior is None else prior["config"])


def _check_mel(mel: dict[str, Any], where: str) -> None:
    nyquist = mel["sample_rate"] / 2
    f_max = nyquist if mel["f_max"] is None else mel["f_max"]
    if not mel["f_min"] < f_max <= nyquist:
        refuse(f"{where}.f_max", f"must be above f_min ({mel['f_min']:g}) and at most "
                f"half the sample rate ({nyquist:g})", mel["f_max"])  # fmt: skip
    if mel["n_fft"] % 2:  # the inverse (Griffin-Lim) needs a whole number of bins per half
        refuse(f"{where}.n_fft", "must be even", mel["n_fft"])
    if mel["hop_length"] > mel["n_fft"] // 2:  # the inverse needs overlapping windows
        refuse(f"{where}.hop_length", f"must be at most half of n_fft ({mel['n_fft']})",
                mel["hop_length"])  # fmt: skip


def _check_prior(prior: dict[str, Any], config: dict[str, Any]) -> None:
    """The prior models this VQ-VAE's codes, and its step length follows from the config."""
    prior_config = prior["config"]
    for name in ("rvq_levels", "codebook_size"):
        if prior_config[name] != config[name]:
            refuse(f"prior.config.{name}", f"must equal config.{name} ({config[name]})",
                    prior_config[name])  # fmt: skip
    if prior_config["hidden_size"] % prior_config["heads"]:
        refuse("prior.config.heads", f"must divide hidden_size ({prior_config['hidden_size']})",
                prior_config["heads"])  # fmt: skip
    step = seconds_per_step(config)
    if not math.isclose(prior["seconds_per_step"], step, rel_tol=1e-9):
        refuse("prior.seconds_per_step", f"must be {step!r} (downsample x hop_length / "
                "sample_rate)", prior["seconds_per_step"])  # fmt: skip


def seconds_per_step(config: dict[str, Any]) -> float:
    """Seconds of sound one latent step stands for."""
    mel = config["mel"]
    return config["downsample"] * mel["hop_length"] / mel["sample_rate"]


def _check_size(config: dict[str, Any], prior_config: dict[str, Any] | None) -> None:
    vqvae = vqvae_elements(config)
    prior = 0 if prior_config is None else prior_elements(prior_config)
    if vqvae + prior > MAX_MODEL_ELEMENTS:
        where = "config" if prior_config is None or vqvae > prior else "prior.config"
        refuse(where, f"implies {vqvae + prior:,} weights and buffers, over the "
                f"{MAX_MODEL_ELEMENTS:,} a model file may hold", show=False)  # fmt: skip


# -- the size a config implies: the numbers ConvVQVAE and CodePrior hold -----------------------
# Counted from the configs alone, so a card is judged before anything is built. A test holds
# each count to the numel of every parameter and buffer of the real modules.


def vqvae_elements(config: dict[str, Any]) -> int:
    """Parameters and buffers of ConvVQVAE (models/rvqvae.py) for this config."""
    n_mels, h = config["mel"]["n_mels"], config["hidden_channels"]
    d, c = config["latent_dim"], config["codebook_dim"]
    q, k = config["rvq_levels"], config["codebook_size"]
    stages = config["downsample"].bit_length() - 1  # log2
    res_block = 4 * h * h + 2 * h  # a 3-tap and a 1-tap convolution
    resample = 4 * h * h + h  # a 4-tap (transposed) convolution
    encoder = (3 * n_mels * h + h) + stages * (res_block + resample) + 2 * res_block + (h * d + d)
    decoder = (
        (3 * d * h + h)
        + 2 * res_block
        + stages * (resample + res_block)
        + (3 * h * n_mels + n_mels)
    )
    projections = 0 if c == d else 2 * d * c + c + d
    codebook = 2 + k + 2 * k * c  # zero, initted, cluster_size, embed_avg, embed
    quantizer = projections + q + q * codebook  # q: the beam score weights
    stage = stage_elements(n_mels, config["mel"]["n_fft"], config.get("decoder_stage_channels", 0))
    return 2 + encoder + decoder + quantizer + stage  # 2: the mel mean and std


def stage_elements(n_mels: int, n_fft: int, channels: int) -> int:
    """Parameters of MagnitudeStage (models/magnitude.py); 0 channels is no stage."""
    if not channels:
        return 0
    bins = n_fft // 2 + 1
    block = (3 * channels * channels + channels) + (channels * channels + channels)
    return (
        (3 * n_mels * channels + channels) + len(STAGE_DILATIONS) * block + (channels * bins + bins)
    )


def prior_elements(config: dict[str, Any]) -> int:
    """Parameters of CodePrior (models/prior.py), and its key-value cache for one clip."""
    h, layers = config["hidden_size"], config["layers"]
    q, k, steps = config["rvq_levels"], config["codebook_size"], config["context_steps"]
    embeddings = (q * k + 1) * h + steps * h + q * h  # tokens (and BOS), positions, levels
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (4 * h * h + 4 * h) + (4 * h * h + h)
    head = 2 * h + h * q * k + q * k  # the last norm, the output layer
    cache = layers * 2 * steps * q * h  # keys and values of a whole window
    return embeddings + layers * block + head + cache


# -- the weights: the tensors the configs build, nothing more --------------------------------

TensorShapes = dict[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)
ANY = -1  # in an expected shape: any length


def check_tensors(
    card: dict[str, Any],
    found: TensorShapes,
    vqvae: TensorShapes,
    prior: TensorShapes | None,
) -> None:
    """The file holds exactly the tensors the checked card's configs build (`vqvae` and
    `prior`, names without their prefix), and the prior's training codes."""
    for name in found:
        if not name.startswith(TENSOR_PREFIXES):
            refuse(f"tensor {name}", "is not part of a distill model", show=False)
    _check_part(found, "vqvae.", vqvae)
    if prior is None:
        if stray := [n for n in found if not n.startswith("vqvae.")]:
            refuse(f"tensor {stray[0]}", "belongs to a prior, and the card has none", show=False)
        return
    _check_part(found, "prior.", prior)
    levels = card["prior"]["config"]["rvq_levels"]
    files = len(card["prior"]["training_files"])
    codes = {"steps": ("I16", (ANY, levels)), "file_steps": ("I64", (files,))}
    _check_part(found, "prior_codes.", codes)


def _check_part(found: TensorShapes, prefix: str, expected: TensorShapes) -> None:
    part = {n.removeprefix(prefix): v for n, v in found.items() if n.startswith(prefix)}
    for name in sorted(set(expected) | set(part)):
        where = f"tensor {prefix}{name}"
        if name not in part:
            refuse(where, "missing: the config builds it", show=False)
        if name not in expected:
            refuse(where, "is not part of the model the config builds", show=False)
        (dtype, shape), (want_dtype, want_shape) = part[name], expected[name]
        fits = len(shape) == len(want_shape) and all(
            want in (ANY, got) for got, want in zip(shape, want_shape, strict=True)
        )
        if dtype != want_dtype or not fits:
            wanted = [("any" if w == ANY else w) for w in want_shape]
            refuse(where, f"is {dtype} {list(shape)}, the config builds {want_dtype} {wanted}",
                    show=False)  # fmt: skip


def check_training_codes(card: dict[str, Any], steps: int, low: int, high: int,
                         file_steps: list[int]) -> None:  # fmt: skip
    """The prior's training codes: `steps` rows of codes from `low` to `high` (0 rows: any),
    split into the training files by `file_steps`."""
    codebook_size = card["prior"]["config"]["codebook_size"]
    if steps and not 0 <= low <= high < codebook_size:
        refuse("tensor prior_codes.steps", f"codes must be from 0 to {codebook_size - 1}, "
                f"holds {low} to {high}", show=False)  # fmt: skip
    if any(n < 0 for n in file_steps) or sum(file_steps) != steps:
        refuse("tensor prior_codes.file_steps", "must be each training file's number of "
                f"steps, adding up to the {steps} rows of prior_codes.steps", show=False)  # fmt: skip
