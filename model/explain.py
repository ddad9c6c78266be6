"""What GPT-2 does with a prompt, as plain arrays a learner (or a notebook) can draw.

Each function answers one question a beginner asks, with numbers taken from the model
itself rather than recomputed by hand:

    bpe_merges(bpe, word)             which merges, in which order, built a word's tokens?
    causal_mask_view(model, ids)      what does the mask do to one head's scores?
    attention_weights(model, ids)     how much does each position draw from each earlier one?
    next_token_table(model, ids)      what did the model expect at each position?
    sampling_steps(model, ids, ...)   how does sampling pick one token after another?

`explain_prompt` (a model in memory) and `explain_checkpoint` (a model to load) gather them
all for one prompt; `reports/explain_page.py` draws them on one HTML page (`gpt2lab
explain`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.gpt import GPT, causal_mask
from model.sampling import SamplingConfig, next_token_distribution, stream
from model.tokenizer.byte_map import visible
from model.tokenizer.gpt2_bpe import Tokenizer
from model.tokenizer.reference_bpe import ReferenceBPE

# -- Tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeStep:
    """One merge applied to a word: `left` and `right` joined (the merges file's line
    `rank`, counting from 0), leaving `pieces`. Pieces are in the vocabulary's printable
    form ("Ġworld" for " world")."""

    rank: int
    left: str
    right: str
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class WordMerges:
    """How BPE built one word: its single bytes first, then each merge in order."""

    word: str  # the word as text (" world")
    start: tuple[str, ...]  # one printable character per byte
    steps: tuple[MergeStep, ...]

    @property
    def tokens(self) -> tuple[str, ...]:
        """The word's final tokens (what `ReferenceBPE.bpe` returns)."""
        return self.steps[-1].pieces if self.steps else self.start


def bpe_merges(bpe: ReferenceBPE, word: str) -> WordMerges:
    """`ReferenceBPE.bpe` on one word (one piece of GPT-2's split pattern), keeping
    every intermediate state: the merge ranks the reference BPE holds say which pair joins
    first, and the list of states is the story of how the word became its tokens."""
    chars = "".join(bpe.byte_to_char[b] for b in word.encode("utf-8"))
    steps = [
        MergeStep(bpe.merge_rank[pair], pair[0], pair[1], tuple(pieces))
        for pair, pieces in bpe.merge_steps(chars)
    ]
    return WordMerges(word, tuple(chars), tuple(steps))


def split_words(bpe: ReferenceBPE, text: str) -> list[str]:
    """The "words" of GPT-2's split pattern: merges never cross their boundaries."""
    return bpe.split_pattern.findall(text)


# -- Attention ----------------------------------------------------------------------------


def _as_batch(model: GPT, ids: Sequence[int]) -> torch.Tensor:
    if len(ids) == 0:
        raise ValueError("ids is empty: give at least one token")
    if len(ids) > model.config.block_size:
        raise ValueError(
            f"{len(ids)} tokens is longer than the model's context "
            f"(block_size={model.config.block_size})"
        )
    device = model.transformer.wte.weight.device
    return torch.tensor([list(ids)], dtype=torch.long, device=device)


@dataclass(frozen=True)
class _Inside:
    """What one pass of the prompt leaves behind: enough for every view but sampling."""

    logits: torch.Tensor  # (T, vocab_size) float32
    maps: np.ndarray  # (n_layer, n_head, T, T) attention weights
    attn_input: torch.Tensor  # (T, C): the layer-normed input of layer `layer`'s attention
    layer: int


@torch.no_grad()
def _look_inside(model: GPT, ids: Sequence[int], layer: int = 0) -> _Inside:
    """Run the prompt once through the explicit attention path (`GPT.hidden_states` with
    return_attention), catching the input of one layer's attention with a forward hook."""
    n_layer = model.config.n_layer
    if not 0 <= layer < n_layer:
        raise ValueError(f"layer {layer} is out of range: the model has layers 0..{n_layer - 1}")
    idx = _as_batch(model, ids)
    caught: list[torch.Tensor] = []
    attn = model.transformer.h[layer].attn
    hook = attn.register_forward_hook(lambda _module, args, _out: caught.append(args[0]))
    was_training = model.training
    model.eval()  # dropout off: show what the model computes when it predicts
    try:
        hidden, maps = model.hidden_states(idx, return_attention=True)
        logits = model.lm_head(hidden)
    finally:
        hook.remove()
        model.train(was_training)
    weights = torch.stack([m[0] for m in maps]).float().cpu().numpy()
    return _Inside(logits[0].float(), weights, caught[0][0], layer)


def attention_weights(model: GPT, ids: Sequence[int]) -> np.ndarray:
    """(n_layer, n_head, T, T) float32: row i of a head says how much position i draws
    from each position j (rows sum to 1, zeros above the diagonal). Taken from the
    explicit attention path (as `GPT.attention_maps`), so it is what the model computes."""
    return _look_inside(model, ids).maps


@dataclass(frozen=True)
class CausalMaskView:
    """One head's attention, step by step, each (T, T) float32.

    scores:  q·k / sqrt(head_dim), every query against every key, future included;
    masked:  the same with every key after its query set to -inf;
    weights: softmax of each row of `masked`: the future gets exactly 0.
    """

    layer: int
    head: int
    scores: np.ndarray
    masked: np.ndarray
    weights: np.ndarray


def causal_mask_view(
    model: GPT, ids: Sequence[int], layer: int = 0, head: int = 0
) -> CausalMaskView:
    """The scores of one head before and after the causal mask, and after the softmax."""
    return _mask_view(model, _look_inside(model, ids, layer), head)


@torch.no_grad()
def _mask_view(model: GPT, inside: _Inside, head: int) -> CausalMaskView:
    """The head's queries and keys computed from the caught input with the layer's own
    weights, as `CausalSelfAttention.forward` does, then the textbook formula."""
    n_head = model.config.n_head
    if not 0 <= head < n_head:
        raise ValueError(f"head {head} is out of range: each layer has heads 0..{n_head - 1}")
    attn = model.transformer.h[inside.layer].attn
    C, head_dim = model.config.n_embd, model.config.head_dim
    q, k, _ = attn.c_attn(inside.attn_input).split(C, dim=-1)
    q = q[:, head * head_dim : (head + 1) * head_dim]
    k = k[:, head * head_dim : (head + 1) * head_dim]
    scores = (q @ k.T) / math.sqrt(head_dim)
    T = scores.size(0)
    masked = scores.masked_fill(~causal_mask(T, T, scores.device), float("-inf"))
    weights = F.softmax(masked, dim=-1)
    as_np = lambda t: t.float().cpu().numpy()  # noqa: E731
    return CausalMaskView(inside.layer, head, as_np(scores), as_np(masked), as_np(weights))


# -- Next-token probabilities -------------------------------------------------------------


@dataclass(frozen=True)
class NextTokenTable:
    """At each position t of the prompt, the model's top-k guesses for token t+1.

    top_ids, top_probs: (T, k), most likely first; probabilities are softmax(logits).
    actual_ids: (T-1,) the token that came next in the prompt; actual_probs its
    probability; actual_ranks its rank among all tokens (1 = the model's first guess).
    """

    top_ids: np.ndarray
    top_probs: np.ndarray
    actual_ids: np.ndarray
    actual_probs: np.ndarray
    actual_ranks: np.ndarray


@torch.no_grad()
def next_token_logits(model: GPT, ids: Sequence[int]) -> torch.Tensor:
    """(T, vocab_size) float32 logits: position t scores every token as token t+1."""
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(_as_batch(model, ids))
    finally:
        model.train(was_training)
    return logits[0].float()


def next_token_table(model: GPT, ids: Sequence[int], k: int = 5) -> NextTokenTable:
    """The model's top-k next tokens at every position, and how it ranked what came."""
    return next_token_table_from_logits(next_token_logits(model, ids), ids, k)


def next_token_table_from_logits(
    logits: torch.Tensor, ids: Sequence[int], k: int = 5
) -> NextTokenTable:
    """`next_token_table` from logits already computed, (T, vocab_size)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    probs = F.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, min(k, probs.size(-1)), dim=-1)
    actual = torch.tensor(list(ids[1:]), dtype=torch.long, device=probs.device)
    actual_probs = probs[:-1].gather(1, actual.unsqueeze(1)).squeeze(1)
    # Rank = 1 + how many tokens the model found strictly more likely.
    ranks = (probs[:-1] > actual_probs.unsqueeze(1)).sum(-1) + 1
    return NextTokenTable(
        top_ids=top.indices.cpu().numpy(),
        top_probs=top.values.cpu().numpy(),
        actual_ids=actual.cpu().numpy(),
        actual_probs=actual_probs.cpu().numpy(),
        actual_ranks=ranks.cpu().numpy(),
    )


# -- Sampling, step by step ---------------------------------------------------------------


@dataclass(frozen=True)
class SamplingStep:
    """One step of the generation loop.

    before_*: the model's own distribution (softmax of the logits), top-k of it;
    after_*:  the distribution sampled from, after temperature, top-k and top-p, top-k of
              it (tokens the filter removed have probability 0 and are not listed);
    kept:     how many tokens the filter left with a probability above 0.
    """

    token: int
    before_ids: np.ndarray
    before_probs: np.ndarray
    after_ids: np.ndarray
    after_probs: np.ndarray
    kept: int
    finish_reason: str | None  # set on the last step: "eot", "stop_string" or "length"


@dataclass(frozen=True)
class SamplingTrace:
    steps: list[SamplingStep]
    stop_reason: str  # why the loop ended, in words

    @property
    def tokens(self) -> list[int]:
        """The tokens drawn, <|endoftext|> left out (as `model.sampling.generate`)."""
        return [s.token for s in self.steps if s.finish_reason != "eot"]


def sampling_steps(
    model: GPT,
    ids: Sequence[int],
    sampling: SamplingConfig,
    *,
    eot_token: int | None = None,
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    k: int = 10,
) -> SamplingTrace:
    """Run the generation loop (`model.sampling.stream`, the one `gpt2lab generate` uses)
    on one prompt, keeping each step's distribution before and after the filter.

    The loop computes each step's logits with `model.lm_head`; a forward hook on it keeps
    them, and the filter (`next_token_distribution`) is applied to them again here to show
    what the token was drawn from. So the tokens shown are exactly the ones `generate`
    draws with the same settings and seed.
    """
    step_logits: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_hook(
        lambda _module, _args, out: step_logits.append(out.detach().float())
    )
    try:
        events = list(
            stream(
                model,
                [list(ids)],
                sampling,
                eot_token=eot_token,
                stop_strings=stop_strings,
                decode=decode,
            )
        )
    finally:
        hook.remove()
    steps = []
    for event, logits in zip(events, step_logits, strict=True):  # one of each per step
        before = F.softmax(logits, dim=-1)[0]
        if sampling.greedy:  # temperature 0: all the probability on the most likely token
            after = torch.zeros_like(before)
            after[int(before.argmax())] = 1.0
        else:
            after = next_token_distribution(logits, sampling)[0]
        steps.append(_step(event.token, before, after, k, event.finish_reason))
    last = steps[-1].finish_reason or "length"
    return SamplingTrace(steps, _STOP_WORDS[last].format(n=sampling.max_new_tokens))


_STOP_WORDS = {
    "eot": "the model drew <|endoftext|>, the token that ends a document in training",
    "stop_string": "the text so far contains a stop string",
    "length": "{n} new tokens were drawn, the most this run allows (max_new_tokens)",
}


def _step(
    token: int, before: torch.Tensor, after: torch.Tensor, k: int, reason: str | None
) -> SamplingStep:
    k = min(k, before.numel())
    top_before = torch.topk(before, k)
    kept = int((after > 0).sum())
    top_after = torch.topk(after, min(k, kept))
    return SamplingStep(
        token=token,
        before_ids=top_before.indices.cpu().numpy(),
        before_probs=top_before.values.cpu().numpy(),
        after_ids=top_after.indices.cpu().numpy(),
        after_probs=top_after.values.cpu().numpy(),
        kept=kept,
        finish_reason=reason,
    )


# -- Everything for one prompt ------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """All the views of one prompt, ready to draw (see `reports/explain_page.py`).

    labels maps every token id that appears anywhere here to readable text (spaces shown
    as ␣, newlines as ⏎), so a page needs no tokenizer to draw it.
    """

    prompt: str
    ids: list[int]
    labels: dict[int, str]
    n_vocab: int  # the tokenizer's vocabulary size
    word: WordMerges | None
    mask: CausalMaskView
    attention: np.ndarray
    next_tokens: NextTokenTable
    sampling: SamplingConfig
    trace: SamplingTrace
    continuation: str  # the generated text, decoded


def explain_prompt(
    model: GPT,
    tokenizer: Tokenizer,
    bpe: ReferenceBPE,
    prompt: str,
    sampling: SamplingConfig,
    *,
    word: str | None = None,
    layer: int = 0,
    head: int = 0,
    top: int = 5,
) -> Explanation:
    """Every view of `prompt`. `word` picks the word whose merges are shown (default: the
    one that took the most merges); `layer` and `head` the head of the causal-mask view."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: give at least one token")
    if max(ids) >= model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.n_vocab} tokens but the model only "
            f"{model.config.vocab_size}: they do not belong together"
        )
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (0 <= layer < n_layer and 0 <= head < n_head):  # checked before any work
        what = f"layer {layer}" if not 0 <= layer < n_layer else f"head {head}"
        raise ValueError(
            f"{what} is out of range: the model has layers 0..{n_layer - 1}, "
            f"each with heads 0..{n_head - 1}"
        )
    words = split_words(bpe, prompt)
    if word is not None and word not in words and f" {word}" in words:
        word = f" {word}"  # a word inside a sentence carries its leading space
    if word is not None and word not in words:
        raise ValueError(f"word {word!r} is not one of the prompt's words: {words}")
    merges = [bpe_merges(bpe, w) for w in words]
    chosen = next((m for m in merges if m.word == word), None)
    if chosen is None and merges:
        chosen = max(merges, key=lambda m: len(m.steps))
    trace = sampling_steps(
        model, ids, sampling, eot_token=tokenizer.eot_token, decode=tokenizer.decode, k=top
    )
    inside = _look_inside(model, ids, layer)  # one pass of the prompt for the next three views
    table = next_token_table_from_logits(inside.logits, ids, top)
    shown = {*ids, *table.top_ids.ravel().tolist()}
    for s in trace.steps:
        shown |= {s.token, *s.before_ids.tolist(), *s.after_ids.tolist()}
    labels = {i: token_label(tokenizer, i) for i in sorted(shown)}
    return Explanation(
        prompt=prompt,
        ids=ids,
        labels=labels,
        n_vocab=tokenizer.n_vocab,
        word=chosen,
        mask=_mask_view(model, inside, head),
        attention=inside.maps,
        next_tokens=table,
        sampling=sampling,
        trace=trace,
        continuation=tokenizer.decode(trace.tokens),
    )


def token_label(tokenizer: Tokenizer, token: int) -> str:
    """A token as a person reads it: "␣the", "⏎", or "<|endoftext|>"."""
    if token == tokenizer.eot_token:
        return "<|endoftext|>"
    if token >= tokenizer.n_vocab:  # a model wider than its tokenizer: ids with no text
        return f"<id {token}>"
    return visible(tokenizer.token_bytes([token])[0])


def explain_checkpoint(
    path_or_id: str,
    prompt: str,
    sampling: SamplingConfig,
    *,
    tokenizer: str | None = None,
    device: str = "cpu",
    **views,
) -> Explanation:
    """`explain_prompt` for a model named as `load_model` takes it (a checkpoint folder, a
    Hugging Face folder or a hub id), with its tokenizer (the model's folder unless
    `tokenizer` names another). `views`: word, layer, head, top (see `explain_prompt`)."""
    from model.loading import load_model
    from model.tokenizer.gpt2_bpe import load_tokenizer, resolve_tokenizer_folder

    # The model first: a wrong path is then named as the model, not as its tokenizer.
    net = load_model(path_or_id).to(device)
    folder, _ = resolve_tokenizer_folder(tokenizer or path_or_id)
    # The fast tokenizer encodes; the reference BPE (same files) shows the merges.
    return explain_prompt(
        net, load_tokenizer(folder), ReferenceBPE(folder), prompt, sampling, **views
    )
