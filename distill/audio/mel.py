"""Log-mel features for the models, and a way back to audio for listening.

Pure torch (no torchaudio, which is unavailable here) so the same code runs in
data preparation, training and on whatever device a model lives on. The
filterbank follows librosa's defaults so features can be checked against it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from distill.audio.mel_config import MelConfig


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa htk=False)."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + torch.log(hz.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of _hz_to_mel."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = mel * f_sp
    log = min_log_hz * torch.exp(logstep * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1), Slaney mel scale and Slaney area normalisation, same as librosa.filters.mel defaults."""
    if f_max is None:
        f_max = sample_rate / 2
    f64 = torch.float64  # build in double, like librosa, then hand out float32
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=f64)
    mel_edges = torch.linspace(
        float(_hz_to_mel(torch.tensor(f_min, dtype=f64))),
        float(_hz_to_mel(torch.tensor(f_max, dtype=f64))),
        n_mels + 2,
        dtype=f64,
    )
    hz_edges = _mel_to_hz(mel_edges)
    widths = hz_edges.diff()
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    # Area normalisation keeps each band's energy comparable regardless of width.
    weights = weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.to(torch.float32)


def _center_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad the last axis like numpy's 'reflect', even when pad >= length.

    torch's reflect padding refuses pads longer than the signal, which would make
    very short clips (e.g. 20 ms at n_fft=1024) crash; repeating the reflection is
    what librosa/numpy do, so results still match them.
    """
    length = x.shape[-1]
    if length < 2:
        mode = "constant" if length == 0 else "replicate"
        return F.pad(x.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
    while pad > 0:
        step = min(pad, x.shape[-1] - 1)
        x = F.pad(x.unsqueeze(1), (step, step), mode="reflect").squeeze(1)
        pad -= step
    return x


def _stft(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT of (batch, samples), equivalent to center=True, pad_mode='reflect'."""
    padded = _center_pad(x, n_fft // 2)
    return torch.stft(padded, n_fft, hop_length, window=window, center=False, return_complex=True)


class MelSpectrogram(torch.nn.Module):
    """audio (..., samples) float -> log-mel (..., n_mels, frames).

    torch.stft with a periodic Hann window, center=True, pad_mode='reflect', magnitude (power 1),
    mel filterbank as a registered buffer, natural log of clamp(min=log_floor).
    Frames = 1 + samples // hop_length.
    """

    window: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        fb = mel_filterbank(
            config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
        )
        # Non-persistent: both are derived from `config`, so storing them in model
        # checkpoints would only add bulk and a chance of disagreeing with it.
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer(
            "window", torch.hann_window(config.n_fft, periodic=True), persistent=False
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(audio)
        mel = torch.matmul(self.filterbank.to(magnitude.dtype), magnitude)
        return torch.log(torch.clamp(mel, min=self.config.log_floor))

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (..., samples) -> the linear STFT magnitude (..., n_fft // 2 + 1, frames)
        the mel is taken from: what the decoder stage learns to predict."""
        lead, samples = audio.shape[:-1], audio.shape[-1]
        flat = audio.reshape(math.prod(lead), samples)  # explicit: -1 fails for 0 samples
        window = self.window.to(flat.dtype)
        magnitude = _stft(flat, self.config.n_fft, self.config.hop_length, window).abs()
        return magnitude.reshape(*lead, magnitude.shape[-2], magnitude.shape[-1])


@functools.lru_cache(maxsize=16)
def filterbank_pinv(config: MelConfig) -> torch.Tensor:
    """Least-squares inverse of the filterbank; cached because pinv is an SVD."""
    fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)
    return torch.linalg.pinv(fb.to(torch.float64)).to(torch.float32)


def mel_to_audio(
    log_mel: torch.Tensor,
    config: MelConfig,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    seed: int = 0,
    first_frame: int = 0,
) -> torch.Tensor:
    """(n_mels, frames) or (batch, n_mels, frames) -> audio (samples) or (batch, samples).

    A rough inversion meant for auditioning model output, not for fidelity: the
    pseudo-inverse spreads energy within each mel band and Griffin-Lim guesses phase.
    """
    if log_mel.dim() not in (2, 3) or log_mel.shape[-2] != config.n_mels:
        raise ValueError(
            f"expected (n_mels={config.n_mels}, frames) or (batch, n_mels, frames), "
            f"got {tuple(log_mel.shape)}"
        )
    mel = torch.exp(log_mel.to(torch.float32))
    pinv = filterbank_pinv(config).to(mel.device)
    magnitude = torch.clamp(torch.matmul(pinv, mel), min=0.0)
    return griffin_lim(
        magnitude, config.n_fft, config.hop_length, n_iter, momentum, length, seed, first_frame
    )


PHASE_BLOCK = 64  # frames of initial phase drawn from one generator (see initial_phase)


def initial_phase(shape: torch.Size, first_frame: int, seed: int) -> torch.Tensor:
    """Griffin-Lim's random starting phase in [0, 1) for frames [first_frame,
    first_frame + frames) of a longer sound, (..., bins, frames).

    Drawn in blocks of PHASE_BLOCK frames, each from its own generator seeded by (seed,
    block): any stretch of a sound gets the phase the whole sound would, without drawing
    the frames before it. That is what lets a long sound be rendered in pieces
    (griffin_lim_reach) with the same result as in one.
    """
    *lead, bins, frames = shape
    first_block = first_frame // PHASE_BLOCK
    blocks = []
    for block in range(first_block, (first_frame + frames - 1) // PHASE_BLOCK + 1):
        # torch's CPU generator keeps 32 bits of a seed: SeedSequence mixes both into them
        mixed = int(np.random.SeedSequence([seed % 2**64, block]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(mixed)
        blocks.append(torch.rand((*lead, bins, PHASE_BLOCK), generator=generator))
    if not blocks:
        return torch.zeros(shape)
    start = first_frame - first_block * PHASE_BLOCK
    return torch.cat(blocks, dim=-1)[..., start : start + frames]


def griffin_lim_reach(n_fft: int, hop_length: int, n_iter: int) -> int:
    """How many frames either side of a frame its Griffin-Lim result depends on.

    One iteration (synthesis, then analysis) couples frames whose windows overlap, fewer
    than n_fft / hop apart; the edge of a stretch (its padding) reaches as far again.
    Rendered with this many more frames each side, a stretch's middle is what it would
    be inside the whole sound.
    """
    return (n_iter + 2) * math.ceil(n_fft / hop_length)


def griffin_lim(
    magnitude: torch.Tensor,
    n_fft: int,
    hop_length: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    seed: int = 0,
    first_frame: int = 0,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) with momentum; (..., n_fft//2+1, frames) -> (..., samples).

    Deterministic given seed: the random initial phase comes from CPU torch.Generators
    (initial_phase), so results do not depend on global RNG state or device.
    `first_frame` says where `magnitude` starts in a longer sound rendered in pieces.
    """
    if magnitude.shape[-2] != n_fft // 2 + 1:
        raise ValueError(f"expected {n_fft // 2 + 1} frequency bins, got {magnitude.shape[-2]}")
    if n_iter < 0 or not 0.0 <= momentum < 1.0:
        raise ValueError("need n_iter >= 0 and 0 <= momentum < 1")
    lead, (n_bins, n_frames) = magnitude.shape[:-2], magnitude.shape[-2:]
    mag = magnitude.reshape(-1, n_bins, n_frames)
    window = torch.hann_window(n_fft, periodic=True, dtype=mag.dtype, device=mag.device)

    phase = initial_phase(mag.shape, first_frame, seed).to(mag.device, mag.dtype)
    angles = torch.polar(torch.ones_like(mag), 2 * math.pi * phase)

    def inverse(spec: torch.Tensor, out_length: int) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop_length, window=window, center=True, length=out_length)

    # Inner iterations use a length whose re-analysis has exactly n_frames (istft's
    # natural length, or 1 sample for a single frame); only the final synthesis
    # honours `length`.
    inner_length = max(hop_length * (n_frames - 1), 1)
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = _stft(inverse(mag * angles, inner_length), n_fft, hop_length, window)
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp(min=1e-16)
        previous = rebuilt
    out_length = hop_length * (n_frames - 1) if length is None else length
    if out_length == 0:  # istft cannot produce an empty signal
        return mag.new_zeros((*lead, 0))
    audio = inverse(mag * angles, out_length)
    return audio.reshape(*lead, audio.shape[-1])
