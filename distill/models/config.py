"""What to build: the RVQ-VAE's and the prior's configurations, sized from the number of
files. Torch-free, so the CLI and the server read them fast."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distill.audio.mel_config import MelConfig
from distill.constants import size_tier

MIN_RVQ_LEVELS = 2
MAX_RVQ_LEVELS = 4
MIN_CODEBOOK_SIZE = 2
MAX_CODEBOOK_SIZE = 2**15  # a model file keeps the prior's training codes as int16
MAX_COMMITMENT_WEIGHT = 10.0  # far past any useful weight (the default is 0.25)
DECODER_STAGE_CHANNELS = 64  # width of the decoder stage (models/magnitude.py); 0 = none
STAGE_DILATIONS = (1, 2, 4, 1)  # its residual blocks: about 17 frames (0.2 s) of context
CODEBOOK_SIZES = (64, 128, 256)  # codes per level, by size_tier: a small set cannot fill more


def codebook_size_for(file_count: int) -> int:
    """The codebook size of the dataset's size tier (distill/events.py: SMALL_SET, MID_SET)."""
    return CODEBOOK_SIZES[size_tier(file_count)]


# (hidden size, layers, heads, dropout) by size_tier: a small set gets a small, heavily
# regularised prior; it would memorise a large one in a few epochs.
PRIOR_SIZES = (
    (128, 2, 4, 0.3),
    (256, 4, 4, 0.2),
    (512, 6, 8, 0.1),
)


def prior_size_for(file_count: int) -> dict[str, Any]:
    """hidden_size, layers, heads and dropout for a dataset of `file_count` files."""
    hidden, layers, heads, dropout = PRIOR_SIZES[size_tier(file_count)]
    return {"hidden_size": hidden, "layers": layers, "heads": heads, "dropout": dropout}


@dataclass(frozen=True)
class VQVAEConfig:
    """Everything needed to rebuild a ConvVQVAE, stored inside every `.distill` file."""

    mel: MelConfig = field(default_factory=MelConfig)
    window_frames: int = 128  # mel frames per training window (~1.5 s at 22.05 kHz / hop 256)
    hidden_channels: int = 128  # width of the convolutional encoder and decoder
    latent_dim: int = 64  # encoder output channels, the space the RVQ quantizes
    downsample: int = (
        2  # mel frames per latent vector (a power of two): 23 ms, fine enough for onsets
    )
    rvq_levels: int = 3  # residual quantizer levels, 2..4
    codebook_size: int = 64  # codes per level
    codebook_dim: int = 32  # codes live in this projected space
    commitment_weight: float = 0.25  # weight of the commitment loss against reconstruction
    ema_decay: float = 0.9  # EMA decay of codebook updates (small sets need fast updates)
    dead_code_threshold: float = 1.0  # EMA usage under which a code is reset to a data vector
    kmeans_iters: int = 10  # k-means iterations of the codebook initialisation
    # The decoder stage's width, 0 for none: a model file from before the stage has
    # no such field and reads as 0, so it plays through Griffin-Lim as it always did.
    decoder_stage_channels: int = DECODER_STAGE_CHANNELS

    def __post_init__(self) -> None:
        if not MIN_RVQ_LEVELS <= self.rvq_levels <= MAX_RVQ_LEVELS:
            raise ValueError(
                f"rvq_levels must be {MIN_RVQ_LEVELS} to {MAX_RVQ_LEVELS}, got {self.rvq_levels}"
            )
        if not MIN_CODEBOOK_SIZE <= self.codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(
                f"codebook_size must be {MIN_CODEBOOK_SIZE} to {MAX_CODEBOOK_SIZE}, "
                f"got {self.codebook_size}"
            )
        if self.downsample < 1 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of two, got {self.downsample}")
        if self.window_frames % self.downsample:
            raise ValueError("window_frames must be a multiple of downsample")
        if not 0 <= self.commitment_weight <= MAX_COMMITMENT_WEIGHT:
            raise ValueError(f"commitment_weight must be 0 to {MAX_COMMITMENT_WEIGHT:g}")
        if self.decoder_stage_channels < 0:
            raise ValueError("decoder_stage_channels must be 0 (no stage) or more")

    @property
    def window_steps(self) -> int:
        """Latent vectors per training window."""
        return self.window_frames // self.downsample

    @classmethod
    def from_file_count(cls, file_count: int, **overrides: Any) -> VQVAEConfig:
        """Defaults sized for a dataset of `file_count` usable files; None overrides are ignored."""
        chosen = {k: v for k, v in overrides.items() if v is not None}
        chosen.setdefault("codebook_size", codebook_size_for(file_count))
        return cls(**chosen)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mel"] = self.mel.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQVAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["mel"] = MelConfig.from_dict(data.get("mel", {}))
        values.setdefault("decoder_stage_channels", 0)  # written before the stage existed
        return cls(**values)


@dataclass(frozen=True)
class PriorConfig:
    """Everything needed to rebuild a CodePrior; stored in the model file under "prior"."""

    rvq_levels: int  # RVQ levels of the VQ-VAE the prior models (q)
    codebook_size: int  # codes per level (k)
    context_steps: int  # time steps one window holds; the sequence is context_steps * rvq_levels
    hidden_size: int = 128  # width of the embeddings and the residual stream
    layers: int = 2  # transformer blocks
    heads: int = 4  # attention heads; must divide hidden_size
    dropout: float = 0.3  # on embeddings, attention and MLP outputs, while training

    def __post_init__(self) -> None:
        for name in (
            "rvq_levels",
            "codebook_size",
            "context_steps",
            "hidden_size",
            "layers",
            "heads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden_size ({self.hidden_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def sequence_length(self) -> int:
        """Tokens in one full window."""
        return self.context_steps * self.rvq_levels

    @classmethod
    def from_file_count(
        cls,
        file_count: int,
        rvq_levels: int,
        codebook_size: int,
        window_steps: int,
        **overrides: Any,
    ) -> PriorConfig:
        """Sized for `file_count` files (PRIOR_SIZES); None overrides are ignored.

        The context defaults to `window_steps`, one VQ-VAE training window.
        """
        chosen = prior_size_for(file_count)
        chosen |= {k: v for k, v in overrides.items() if v is not None}
        chosen.setdefault("context_steps", window_steps)
        return cls(rvq_levels=rvq_levels, codebook_size=codebook_size, **chosen)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
