"""ConvVQVAE: a 1-D convolutional autoencoder over log-mel frames with a ResidualVQ between.

Shapes: log-mel `(b, m, t)` with m mel bins as channels and t frames; latents `(b, n, d)`
with n = t / downsample; codes `(b, n, q)` with q RVQ levels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import ResidualVQ

from distill.models.config import VQVAEConfig
from distill.models.magnitude import MagnitudeStage


class QuantizeOutput(NamedTuple):
    quantized: Tensor  # (b, n, d)
    indices: Tensor  # (b, n, q)
    commit_losses: Tensor  # (q,) one commitment loss per level


class VQVAEOutput(NamedTuple):
    reconstruction: Tensor  # (b, m, t) log-mel
    indices: Tensor  # (b, n, q)
    commit_loss: Tensor  # scalar: commitment losses summed over levels


class ResBlock(nn.Module):
    """Two dilated convolutions with a skip: widens the receptive field cheaply."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


def _stages(downsample: int) -> int:
    return int(math.log2(downsample))


class Encoder(nn.Module):
    def __init__(self, n_mels: int, hidden: int, latent_dim: int, downsample: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(n_mels, hidden, 3, padding=1)]
        for _ in range(_stages(downsample)):
            layers += [ResBlock(hidden), nn.Conv1d(hidden, hidden, 4, stride=2, padding=1)]
        layers += [ResBlock(hidden, dilation=1), ResBlock(hidden, dilation=3), nn.GELU()]
        layers += [nn.Conv1d(hidden, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, mel: Tensor) -> Tensor:
        return self.net(mel)  # (b, m, t) -> (b, d, n)


class Decoder(nn.Module):
    def __init__(self, n_mels: int, hidden: int, latent_dim: int, downsample: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(latent_dim, hidden, 3, padding=1)]
        layers += [ResBlock(hidden, dilation=1), ResBlock(hidden, dilation=3)]
        for _ in range(_stages(downsample)):
            layers += [nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1), ResBlock(hidden)]
        layers += [nn.GELU(), nn.Conv1d(hidden, n_mels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: Tensor) -> Tensor:
        return self.net(latent)  # (b, d, n) -> (b, m, t)


def decoder_reach(downsample: int) -> int:
    """Latent steps either side of a step that the Decoder's output for it depends on, a
    bound from its layers: a 3-tap convolution and blocks of dilation 1 and 3 at the
    latent rate (5 steps), at most one more step per upsampling stage (its transposed
    convolution and block), and the last 3-tap convolution's frame."""
    return 5 + _stages(downsample) + 1


class ConvVQVAE(nn.Module):
    """Encodes normalised log-mel to latents, quantizes them with RVQ, decodes back.

    The per-dataset log-mel mean and standard deviation are buffers, so they travel in
    the weights and a loaded model normalises exactly as it did in training.
    """

    mel_mean: Tensor  # buffers, registered in __init__
    mel_std: Tensor

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        n_mels = config.mel.n_mels
        self.register_buffer("mel_mean", torch.zeros(()))
        self.register_buffer("mel_std", torch.ones(()))
        self.encoder = Encoder(n_mels, config.hidden_channels, config.latent_dim, config.downsample)
        self.decoder = Decoder(n_mels, config.hidden_channels, config.latent_dim, config.downsample)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_quantizers=config.rvq_levels,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            decay=config.ema_decay,
            kmeans_init=True,
            kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.dead_code_threshold,
            commitment_weight=1.0,  # the one weight lives in our loss, not inside the quantizer
        )
        # The decoder stage, trained after the rest (training/stage.py); None for a model
        # without one, which then plays through the reference path.
        channels = config.decoder_stage_channels
        self.stage = MagnitudeStage(config.mel, channels) if channels else None

    def set_normalization(self, mean: float, std: float) -> None:
        self.mel_mean.fill_(mean)
        self.mel_std.fill_(max(std, 1e-3))

    def encode(self, mel: Tensor) -> Tensor:
        """(b, m, t) log-mel -> (b, n, d) latents."""
        normalized = (mel - self.mel_mean) / self.mel_std
        return self.encoder(normalized).transpose(1, 2)

    def quantize(self, latent: Tensor, mask: Tensor | None = None) -> QuantizeOutput:
        """`mask` (b, n) bool limits codebook learning (k-means, EMA, dead-code resets) to
        the audible vectors; the quantizer then outputs zeros for the others."""
        quantized, indices, commit_losses = self.quantizer(latent, mask=mask)
        if not self.training:  # the library only computes the loss while training
            commit_losses = self.commit_losses(latent, indices)
        return QuantizeOutput(quantized, indices, commit_losses.reshape(-1))

    def commit_losses(self, latent: Tensor, indices: Tensor) -> Tensor:
        """(q,) per-level MSE between each level's residual and its chosen code.

        The same quantity ResidualVQ reports in training, so validation and training
        commitment losses can be read on one chart.
        """
        codes = self.quantizer.get_codes_from_indices(indices)  # (q, b, n, c)
        residual = self.quantizer.project_in(latent)
        losses = []
        for code in codes:
            losses.append(F.mse_loss(code, residual))
            residual = residual - code
        return torch.stack(losses)

    def decode(self, quantized: Tensor) -> Tensor:
        """(b, n, d) quantized latents -> (b, m, t) log-mel."""
        return self.decoder(quantized.transpose(1, 2)) * self.mel_std + self.mel_mean

    def forward(self, mel: Tensor) -> VQVAEOutput:
        q = self.quantize(self.encode(mel))
        return VQVAEOutput(self.decode(q.quantized), q.indices, q.commit_losses.sum())

    @torch.no_grad()
    def encode_sound(self, mel: Tensor) -> Tensor:
        """One whole sound's (m, t) log-mel -> its (n, q) codes, n = ceil(t / downsample).

        The convolutions take any length, so a sound is coded in one piece, padded with
        silence only up to the next latent step.
        """
        down = self.config.downsample
        frames = mel.shape[-1]
        padded = F.pad(mel, (0, -frames % down), value=math.log(self.config.mel.log_floor))
        return self.quantize(self.encode(padded.unsqueeze(0))).indices[0]

    @torch.no_grad()
    def decode_sound(
        self, codes: Tensor, frames: int | None = None, levels: int | None = None
    ) -> Tensor:
        """(n, q) codes -> (m, frames) log-mel (frames defaults to n * downsample)."""
        mel = self.decode_indices(codes.unsqueeze(0), levels)[0]
        return mel if frames is None else mel[:, :frames]

    @torch.no_grad()
    def decode_indices(self, indices: Tensor, levels: int | None = None) -> Tensor:
        """(b, n, q) codes -> (b, m, t) log-mel, using only the first `levels` levels.

        levels=0 decodes the quantizer's output for "no codes at all", the baseline
        against which level 1's contribution is measured.
        """
        used = self.config.rvq_levels if levels is None else levels
        codes = self.quantizer.get_codes_from_indices(indices)  # (q, b, n, c)
        summed = codes[:used].sum(dim=0) if used > 0 else torch.zeros_like(codes[0])
        return self.decode(self.quantizer.project_out(summed))


def multiscale_mel_loss(
    prediction: Tensor,
    target: Tensor,
    audible: Tensor | None = None,
    scales: tuple[int, ...] = (1, 2, 4),
) -> Tensor:
    """Mean L1 between log-mels average-pooled over (mel, time) at each scale, counted
    over the audible frames only.

    The full-resolution term keeps detail; the pooled terms weigh broad spectral shape
    and envelopes, which is what a listener notices first. `audible` (b, t) weighs each
    frame (1 on a file's own frames, 0 on padding; None counts every frame): a loss over
    padded windows would mostly teach a drum kit's model the silence after each hit.
    A pooled cell counts by the share of its frames that are audible.
    """
    weight = torch.ones_like(prediction[:, 0]) if audible is None else audible.to(prediction.dtype)
    weight = weight.unsqueeze(1).expand_as(prediction).unsqueeze(1)  # (b, 1, m, t)
    total = prediction.new_zeros(())
    for scale in scales:
        p, t, w = prediction.unsqueeze(1), target.unsqueeze(1), weight  # (b, 1, m, t)
        if scale > 1:  # masked means, so a cell's padding does not leak into it
            w_pooled = F.avg_pool2d(w, scale, ceil_mode=True)
            p, t = (
                F.avg_pool2d(x * w, scale, ceil_mode=True) / w_pooled.clamp(min=1e-6)
                for x in (p, t)
            )
            w = w_pooled
        total = total + ((p - t).abs() * w).sum() / w.sum().clamp(min=1.0)
    return total / len(scales)


def latent_mask(audible: Tensor, downsample: int) -> Tensor:
    """(b, t) audible frames -> (b, n) bool: a latent vector is audible when any of its
    frames is."""
    frames = audible.shape[-1] + (-audible.shape[-1] % downsample)
    padded = F.pad(audible, (0, frames - audible.shape[-1]))
    return padded.reshape(audible.shape[0], -1, downsample).amax(dim=-1) > 0


@torch.no_grad()
def silence_codes(vqvae: ConvVQVAE) -> Tensor:
    """(n, q) codes of one window of pure silence (the padding value everywhere)."""
    vqvae.eval()
    config = vqvae.config
    silence = torch.full(
        (1, config.mel.n_mels, config.window_frames), math.log(config.mel.log_floor)
    )
    return vqvae.quantize(vqvae.encode(silence)).indices[0].long()
