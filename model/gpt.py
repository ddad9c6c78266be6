"""GPT-2, the whole network, top to bottom.

A GPT-2 is a stack of identical blocks between an embedding and an output layer:

    tokens -> token embedding + position embedding
           -> n_layer x [ LayerNorm -> masked self-attention -> add
                          LayerNorm -> MLP                    -> add ]
           -> LayerNorm -> output layer (the token embedding, reused) -> next-token logits

The module names (`transformer.h.0.attn.c_attn`, ...) follow OpenAI's and Hugging Face's,
so checkpoints convert by name (see `hf_checkpoint.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import GPTConfig
from model.loss import IGNORE_INDEX, chunked_cross_entropy


def causal_mask(T: int, S: int, device=None) -> torch.Tensor:
    """(T, S) booleans: the T newest positions (queries) may see keys at or before them.

    With a KV cache the queries are the last T of S positions, so query i sits at
    absolute position S - T + i.
    """
    query_pos = torch.arange(S - T, S, device=device).unsqueeze(1)
    key_pos = torch.arange(S, device=device).unsqueeze(0)
    return key_pos <= query_pos


class KVCache:
    """The keys and values of every position seen so far, for one layer.

    When sampling, each new token attends to all earlier ones. Their keys and values do
    not change, so we keep them instead of recomputing the whole prefix for every token:
    one step then costs one position, not the full context.
    """

    def __init__(self, batch: int, config: GPTConfig, max_len: int, *, device, dtype) -> None:
        shape = (batch, config.n_head, max_len, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values; return all of them so far."""
        end = self.length + k.size(2)
        if end > self.keys.size(2):
            raise ValueError(f"KV cache is full: {end} positions > {self.keys.size(2)}")
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class CausalSelfAttention(nn.Module):
    """Each position mixes information from itself and earlier positions, never later ones.

    "Causal" is what makes a language model: when predicting token t+1 the model may only
    look at tokens 0..t, otherwise training would teach it to copy the answer.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.explicit = config.attention == "explicit"
        # One matrix computes queries, keys and values for all heads at once.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C). mask: (B, 1, T, S) booleans, True where a query may see a key,
        or None for the plain causal case. Returns the output and, on request, the
        attention weights (B, n_head, T, S)."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim): each head attends independently.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # now (B, n_head, S, head_dim), S >= T
        S = k.size(2)
        dropout_p = self.dropout if self.training else 0.0

        weights = None
        explicit = self.explicit or return_weights
        if mask is None and (explicit or (T > 1 and S != T)):
            mask = causal_mask(T, S, x.device)
        if explicit:
            # The textbook formula: softmax(q k^T / sqrt(d)) v, with the future masked out.
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            # -inf before the softmax gives the future exactly zero weight.
            scores = scores.masked_fill(~mask, float("-inf"))
            weights = F.softmax(scores, dim=-1)
            y = self.attn_dropout(weights) @ v
        else:
            # The same computation fused into one kernel (flash / memory-efficient attention).
            # Without a mask: is_causal for a whole sequence; a single new token sees all.
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None and T > 1
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in Hugging Face).
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """One transformer block. GPT-2 normalises *before* each sub-layer ("pre-LN"), which
    keeps the residual stream a clean sum and makes deep stacks train stably."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, kv_cache=None, return_weights=False):
        attn_out, weights = self.attn(self.ln_1(x), mask, kv_cache, return_weights)
        x = x + attn_out
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token -> vector
                wpe=nn.Embedding(config.block_size, config.n_embd),  # position -> vector
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output layer *is* the token embedding. A token's vector is used
        # both to read it in and to score it as the next token; this saves 38M parameters
        # in GPT-2 small and was part of the original model.
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: every block adds two outputs (attention and MLP) to the
        # residual stream, so its variance grows with depth. Scaling those two projections
        # by 1/sqrt(2 * n_layer) keeps the stream's size independent of the depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, *, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once). GPT-2 small: 124,439,808."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel() + self.transformer.wte.weight.numel()
        return n

    def hidden_states(
        self,
        idx: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stack; return the final (normalised) hidden states (B, T, C).

        attention_mask: (B, S) with 1 for real tokens and 0 for padding, over every position
        so far (cached ones included). Batched prompts of different lengths are padded on
        the left; the mask keeps real tokens from attending to the padding, and positions
        are counted from each sequence's first real token.
        """
        B, T = idx.size()
        past = kv_caches[0].length if kv_caches else 0
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of {past + T} tokens is longer than the model's context "
                f"(block_size={self.config.block_size})"
            )

        mask = None
        if attention_mask is None:
            positions = torch.arange(past, past + T, device=idx.device).unsqueeze(0)
        else:
            # Position = number of real tokens before this one (padding does not count).
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
            mask = self._padding_causal_mask(attention_mask.bool(), T)

        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        maps = []
        for i, block in enumerate(self.transformer.h):
            cache = kv_caches[i] if kv_caches else None
            x, weights = block(x, mask, cache, return_attention)
            if weights is not None:
                maps.append(weights)
        return self.transformer.ln_f(x), maps

    @staticmethod
    def _padding_causal_mask(key_is_real: torch.Tensor, T: int) -> torch.Tensor:
        """(B, 1, T, S): query i may see key j if j is real and not in its future."""
        S = key_is_real.size(1)
        mask = causal_mask(T, S, key_is_real.device) & key_is_real[:, None, None, :]
        # A padding query would see no key at all, and a softmax over nothing is NaN.
        # Let each query see itself: a padding query's output is never used, and this
        # keeps the numbers finite.
        itself = torch.arange(S - T, S, device=mask.device).unsqueeze(1) == torch.arange(
            S, device=mask.device
        )
        return mask | itself

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """idx: (B, T) token ids. Returns (logits, loss).

        Without targets: logits (B, T, vocab_size), loss None.
        With targets (B, T) (the next token at each position; IGNORE_INDEX to skip one):
        the mean cross-entropy loss, and logits None unless return_logits=True. The loss is
        computed a slice at a time without building the full logits (see `loss.py`), which
        makes a training step much cheaper in memory and time.
        """
        h, _ = self.hidden_states(idx)
        if targets is None:
            return self.lm_head(h), None
        if return_logits:
            logits = self.lm_head(h)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX
            )
            return logits, loss
        loss = chunked_cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten())
        return None, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer, each (B, n_head, T, T), for teaching:
        row i shows how much position i draws from each earlier position."""
        _, maps = self.hidden_states(idx, return_attention=True)
        return maps

    def new_kv_caches(self, batch: int, max_len: int) -> list[KVCache]:
        p = self.transformer.wte.weight
        return [
            KVCache(batch, self.config, max_len, device=p.device, dtype=p.dtype)
            for _ in range(self.config.n_layer)
        ]
