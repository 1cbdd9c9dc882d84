"""CodePrior: a causal transformer over an RVQ-VAE's codes, with a key-value cache.

The codes of a clip, `(t, q)` for t time steps and q levels, are read time-major: every
level of step 0, then every level of step 1, and so on. Each code becomes a token of its
own level (token = level * codebook_size + code), so code 5 of level 1 and code 5 of
level 2 get different embeddings. A start token (BOS) opens every window.

Slot i of a window predicts code i (time step i // q, level i % q). Its input is the
token before it (BOS for slot 0) plus the position embedding of step i // q and the level
embedding of level i % q: the model always knows which step and which level it is asked
for. The head scores every level's codes; each slot keeps the scores of its own level.

Shapes: codes `(b, t, q)`; tokens and inputs `(b, n)` with n = t * q; logits `(b, n, k)`
with k = codebook_size. Attention caches `(b, heads, context, head_dim)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.models.config import PriorConfig


class KVCache(nn.Module):
    """One attention layer's keys and values, preallocated for a whole window (gpt-fast).

    `update` writes the new positions and returns the keys and values of every position
    so far, so a decode step attends over exactly the filled part of the buffer.
    """

    keys: Tensor  # buffers, registered in __init__
    values: Tensor

    def __init__(self, batch: int, heads: int, length: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        shape = (batch, heads, length, head_dim)
        self.register_buffer("keys", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("values", torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, start: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        end = start + keys.shape[2]
        self.keys[:, :, start:end] = keys
        self.values[:, :, start:end] = values
        return self.keys[:, :, :end], self.values[:, :, :end]


class Attention(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout
        self.cache: KVCache | None = None

    def forward(self, x: Tensor, start: int) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.cache is not None:  # (b, h, n, hd) -> keys and values of slots 0..start+n
            k, v = self.cache.update(start, k, v)
        if n == 1:  # one new slot sees everything before it: no mask
            mask, causal = None, False
        elif k.shape[2] == n:  # the whole window from slot 0
            mask, causal = None, True
        else:  # a chunk after cached slots: row i sees slots up to start + i
            mask = torch.ones(n, k.shape[2], dtype=torch.bool, device=x.device).tril(start)
            causal = False
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout
        )  # (b, h, n, hd)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm attention and MLP, each with a residual."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        hidden = config.hidden_size
        self.norm1 = nn.LayerNorm(hidden)
        self.attention = Attention(config)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden)
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, start: int) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x), start))
        return x + self.drop(self.mlp(self.norm2(x)))


class CodePrior(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        hidden, q, k = config.hidden_size, config.rvq_levels, config.codebook_size
        self.bos = q * k  # the start token follows every level's codes
        self.token = nn.Embedding(q * k + 1, hidden)
        self.position = nn.Embedding(config.context_steps, hidden)
        self.level = nn.Embedding(q, hidden)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, q * k)
        self.apply(_init_weights)

    def forward(self, inputs: Tensor, start: int = 0) -> Tensor:
        """(b, n) input tokens for slots start..start+n-1 -> (b, n, k) logits of their codes.

        Without a cache `start` must be 0. With one (`setup_cache`), slots before `start`
        come from the cache: prefill a window with start=0, then feed one token at a time.
        """
        b, n = inputs.shape
        q, k = self.config.rvq_levels, self.config.codebook_size
        if start + n > self.config.sequence_length:
            raise ValueError(
                f"slots {start}..{start + n - 1} do not fit a window of "
                f"{self.config.sequence_length} tokens"
            )
        if n == 1:  # one slot, as generation feeds them: its step and level are numbers
            level = start % q
            x = self.token(inputs) + self.position.weight[start // q] + self.level.weight[level]
        else:
            slots = torch.arange(start, start + n, device=inputs.device)
            levels = slots % q
            x = self.token(inputs) + self.position(slots // q) + self.level(levels)  # (b, n, d)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, start)
        logits = self.head(self.norm(x)).view(b, n, q, k)
        if n == 1:
            return logits[:, :, level]  # (b, 1, k)
        return logits[:, torch.arange(n, device=inputs.device), levels]  # (b, n, k)

    def setup_cache(self, batch: int) -> None:
        """Give every attention layer a cache for `batch` windows (gpt-fast's setup_caches)."""
        config = self.config
        dtype = self.head.weight.dtype
        head_dim = config.hidden_size // config.heads
        for attention in self._attention_layers():
            attention.cache = KVCache(
                batch, config.heads, config.sequence_length, head_dim, dtype
            ).to(self.head.weight.device)

    def clear_cache(self) -> None:
        for attention in self._attention_layers():
            attention.cache = None

    def _attention_layers(self) -> list[Attention]:
        """Every block's attention, typed: a ModuleList hands out plain Modules."""
        return [module for module in self.modules() if isinstance(module, Attention)]

    def loss(self, codes: Tensor) -> Tensor:
        """Per-token cross-entropy `(b, t*q)` of codes `(b, t, q)`, teacher-forced.

        Unreduced: callers weigh tokens with `token_mask` (padding, audible steps).
        """
        inputs = window_inputs(codes, self.config.codebook_size, self.bos)
        logits = self(inputs)  # (b, n, k)
        targets = codes.reshape(codes.shape[0], -1)  # (b, t*q), time-major
        return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


def token_mask(step_mask: Tensor, levels: int) -> Tensor:
    """(b, t) per time step -> (b, t*q) per token, time-major like the tokens."""
    return step_mask.repeat_interleave(levels, dim=1)


def codes_to_tokens(codes: Tensor, codebook_size: int) -> Tensor:
    """(b, t, q) codes -> (b, t*q) tokens, time-major, each level with its own range."""
    b, t, q = codes.shape
    offsets = torch.arange(q, device=codes.device) * codebook_size  # (q,)
    return (codes + offsets).reshape(b, t * q)


def window_inputs(codes: Tensor, codebook_size: int, bos: int) -> Tensor:
    """(b, t, q) codes -> (b, t*q) inputs: BOS, then every token but the last."""
    tokens = codes_to_tokens(codes, codebook_size)
    start = tokens.new_full((tokens.shape[0], 1), bos)
    return torch.cat([start, tokens[:, :-1]], dim=1)


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: small normal weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
