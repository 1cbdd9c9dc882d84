"""What determines a log-mel feature: MelConfig.

Kept apart from the torch code in mel.py so that reading a config (the CLI's options, a
model's card, the server's forms) does not load torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Bump when the feature computation changes in a way that invalidates caches
# even though no config field changed.
_FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class MelConfig:
    """Everything that determines a log-mel feature; hashable so it can key caches."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None = sample_rate / 2
    log_floor: float = 1e-5  # log(max(mel, floor))

    def __post_init__(self) -> None:
        # Normalise types so MelConfig(f_min=0) and MelConfig(f_min=0.0) are equal
        # and share a fingerprint; catch nonsense early rather than as NaNs later.
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "f_min", float(self.f_min))
        object.__setattr__(self, "log_floor", float(self.log_floor))
        if self.f_max is not None:
            object.__setattr__(self, "f_max", float(self.f_max))
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.f_min < self.effective_f_max <= nyquist:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {nyquist}, got f_min={self.f_min}, f_max={self.f_max}"
            )
        if not self.log_floor > 0.0:
            raise ValueError(f"log_floor must be > 0, got {self.log_floor}")

    @property
    def effective_f_max(self) -> float:
        """f_max with None resolved to Nyquist."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, for checkpoints and cache manifests."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MelConfig:
        """Inverse of to_dict; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown MelConfig fields: {', '.join(unknown)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """Short stable hex digest of all fields, used as a feature-cache key."""
        payload = json.dumps(
            {"version": _FINGERPRINT_VERSION, **self.to_dict()}, sort_keys=True
        ).encode()
        return hashlib.sha256(payload).hexdigest()[:16]
