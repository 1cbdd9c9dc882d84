"""The decoder stage: from the model's log-mel to the log magnitude of every STFT bin.

Why it exists: 80 mel bands stand for 513 STFT bins, and the filterbank's pseudo-inverse
spreads each band's energy evenly over its bins. That step, not Griffin-Lim's phase
guess, is most of what makes even a file's *true* mel sound phasey and smeared when it
is played back. The stage is a small convolutional network that learns the missing
detail (harmonics inside a wide band, the shape of a band's spectrum, a transient's
spread) from the user's own sounds: it starts as exactly the pseudo-inverse (its last
layer is zero) and learns a correction in the log domain on top of it.

It is trained after the VQ-VAE, on the frozen model's own reconstructions of the
training files against their true STFT magnitudes (training/stage.py), so it also
learns to undo some of the model's habitual errors. `render` is the one way a model's
mel becomes audio: through the stage when the model has one, through the reference
path (pseudo-inverse and Griffin-Lim) when it does not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from distill.audio.mel import filterbank_pinv, griffin_lim, griffin_lim_reach, mel_to_audio
from distill.audio.mel_config import MelConfig
from distill.models.config import STAGE_DILATIONS

GRIFFIN_LIM_ITERS = 32  # phase iterations of every rendering, stage or reference path
MAX_LOG_MAGNITUDE = math.log(1e4)  # a prediction is clipped here before exp (far past 0 dBFS)


class _Block(nn.Module):
    """A dilated 3-tap convolution and a 1-tap one, with a skip."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(nn.functional.gelu(self.conv1(nn.functional.gelu(x))))


def stage_bins(mel: MelConfig) -> int:
    return mel.n_fft // 2 + 1


class MagnitudeStage(nn.Module):
    """(b, m, t) log-mel -> (b, n_fft // 2 + 1, t) log magnitude.

    The input is normalised with the VQ-VAE's own mel mean and deviation (passed in),
    so the stage holds no statistics of its own.
    """

    def __init__(self, mel: MelConfig, channels: int):
        super().__init__()
        self.mel = mel
        self.input = nn.Conv1d(mel.n_mels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(channels, d) for d in STAGE_DILATIONS))
        self.output = nn.Conv1d(channels, stage_bins(mel), 1)
        nn.init.zeros_(self.output.weight)  # starts as the pseudo-inverse, exactly
        assert self.output.bias is not None  # Conv1d's default bias=True
        nn.init.zeros_(self.output.bias)

    def baseline(self, log_mel: Tensor) -> Tensor:
        """The pseudo-inverse's log magnitude: what Griffin-Lim is given today."""
        pinv = filterbank_pinv(self.mel).to(log_mel.device)
        linear = torch.matmul(pinv, torch.exp(log_mel.float())).clamp(min=self.mel.log_floor)
        return torch.log(linear)

    def forward(self, log_mel: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        hidden = self.blocks(self.input((log_mel - mean) / std))
        correction = self.output(nn.functional.gelu(hidden))
        return self.baseline(log_mel) + correction


def stage_magnitude(model, log_mel: Tensor) -> Tensor:
    """(m, t) or (b, m, t) log-mel -> linear magnitude through `model`'s stage."""
    batched = log_mel if log_mel.dim() == 3 else log_mel.unsqueeze(0)
    log_magnitude = model.stage(batched, model.mel_mean, model.mel_std)
    magnitude = torch.exp(log_magnitude.clamp(max=MAX_LOG_MAGNITUDE))
    return magnitude if log_mel.dim() == 3 else magnitude[0]


@torch.no_grad()
def render(
    model,
    log_mel: Tensor,
    length: int | None = None,
    seed: int = 0,
    n_iter: int = GRIFFIN_LIM_ITERS,
    first_frame: int = 0,
) -> Tensor:
    """A model's (m, t) log-mel -> audio, the way a user hears it: through the decoder
    stage when the model has a trained one, else through the reference path.
    `first_frame`: where `log_mel` starts in a longer sound rendered in pieces."""
    config: MelConfig = model.config.mel
    if getattr(model, "stage", None) is None:
        return mel_to_audio(
            log_mel.cpu(), config, n_iter=n_iter, length=length, seed=seed, first_frame=first_frame
        )
    magnitude = stage_magnitude(model, log_mel).float().cpu()
    return griffin_lim(
        magnitude, config.n_fft, config.hop_length, n_iter, 0.99, length, seed, first_frame
    )


def render_reach(model, n_iter: int = GRIFFIN_LIM_ITERS) -> int:
    """Frames either side of a frame that its rendered sound depends on: Griffin-Lim's
    reach, and the stage's convolutions' (a 3-tap input, then its dilated blocks)."""
    config: MelConfig = model.config.mel
    stage = 1 + sum(STAGE_DILATIONS) if getattr(model, "stage", None) is not None else 0
    return griffin_lim_reach(config.n_fft, config.hop_length, n_iter) + stage
