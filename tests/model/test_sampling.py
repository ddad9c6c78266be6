"""Sampling: the KV cache changes nothing but speed; greedy decoding matches transformers."""

from __future__ import annotations

import pytest
import torch

from model import GPT, GPTConfig, SamplingConfig, generate, load_model, stream
from model.sampling import cut_at_stop, next_token_distribution

GREEDY = SamplingConfig(max_new_tokens=24, temperature=0)
PROMPTS = [[464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290], [40, 1101], [15496, 11, 995]]


@pytest.fixture(scope="module")
def model(hf_folder) -> GPT:
    return load_model(hf_folder).eval()


def _greedy_without_cache(model: GPT, prompt: list[int], n: int) -> list[int]:
    """The slow, obvious way: rerun the whole sequence for every new token."""
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([sequence]))
            sequence.append(int(logits[0, -1].argmax()))
    return sequence[len(prompt) :]


def test_greedy_with_cache_equals_recomputation_for_a_ragged_batch(model):
    completions = generate(model, PROMPTS, GREEDY)
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        assert completion.tokens == _greedy_without_cache(model, prompt, 24)
        assert completion.finish_reason == "length"


def test_greedy_equals_transformers_generate_for_a_ragged_batch(model, hf_model):
    width = max(len(p) for p in PROMPTS)
    ids = torch.zeros(len(PROMPTS), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(PROMPTS):  # transformers wants left padding too
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    theirs = hf_model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=24,
        do_sample=False,
        pad_token_id=50256,
        eos_token_id=None,
    )
    ours = generate(model, PROMPTS, GREEDY)
    for row, completion in enumerate(ours):
        assert completion.tokens == theirs[row, width:].tolist()
    # ... and one prompt alone gives what it gives inside the batch.
    assert generate(model, [PROMPTS[1]], GREEDY)[0].tokens == ours[1].tokens


def test_explicit_attention_generates_the_same_tokens(model):
    explicit = GPT(model.config.replace(attention="explicit")).eval()
    explicit.load_state_dict(model.state_dict())
    assert [c.tokens for c in generate(explicit, PROMPTS, GREEDY)] == [
        c.tokens for c in generate(model, PROMPTS, GREEDY)
    ]


def test_a_seed_makes_sampling_reproducible(model):
    sampling = SamplingConfig(max_new_tokens=16, temperature=1.0, top_k=50, seed=3)
    first = generate(model, PROMPTS, sampling)
    assert [c.tokens for c in generate(model, PROMPTS, sampling)] == [c.tokens for c in first]
    other = generate(model, PROMPTS, SamplingConfig(max_new_tokens=16, top_k=50, seed=4))
    assert [c.tokens for c in other] != [c.tokens for c in first]


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = [c.tokens for c in generate(model, PROMPTS, GREEDY)]
    for cut in ({"top_k": 1}, {"top_p": 1e-6}):
        sampling = SamplingConfig(max_new_tokens=24, temperature=1.5, seed=0, **cut)
        assert [c.tokens for c in generate(model, PROMPTS, sampling)] == greedy


def test_next_token_distribution_cuts():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    top_k = next_token_distribution(logits, SamplingConfig(top_k=2))
    torch.testing.assert_close(top_k, torch.tensor([[0.5, 0.2, 0, 0, 0]]) / 0.7)
    # top_p=0.8: 0.5 + 0.2 = 0.7 < 0.8, so the third token is still needed; the fourth isn't.
    top_p = next_token_distribution(logits, SamplingConfig(top_p=0.8))
    torch.testing.assert_close(top_p, torch.tensor([[0.5, 0.2, 0.15, 0, 0]]) / 0.85)
    hot = next_token_distribution(logits, SamplingConfig(temperature=2.0))
    assert hot[0, 0] < 0.5 and hot[0, 4] > 0.05  # flatter


def test_stops_at_end_of_text_without_emitting_it(model):
    expected = generate(model, [PROMPTS[0]], GREEDY)[0].tokens
    eot = expected[5]
    first = expected.index(eot)
    completion = generate(model, [PROMPTS[0]], GREEDY, eot_token=eot)[0]
    assert completion.tokens == expected[:first] and completion.finish_reason == "eot"


def test_min_new_tokens_holds_end_of_text_back_as_transformers_does(model, hf_model):
    prompt = PROMPTS[0]
    eot = generate(model, [prompt], GREEDY)[0].tokens[0]  # greedy would stop at once
    assert generate(model, [prompt], GREEDY, eot_token=eot)[0].tokens == []
    held = SamplingConfig(max_new_tokens=24, temperature=0, min_new_tokens=5)
    completion = generate(model, [prompt], held, eot_token=eot)[0]
    assert len(completion.tokens) >= 5 and eot not in completion.tokens
    theirs = hf_model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=24,
        min_new_tokens=5,
        do_sample=False,
        pad_token_id=50256,
        eos_token_id=eot,
    )[0, len(prompt) :].tolist()
    stopped = [eot] if completion.finish_reason == "eot" else []
    assert theirs[: len(completion.tokens) + len(stopped)] == completion.tokens + stopped
    with pytest.raises(ValueError, match="min_new_tokens"):
        SamplingConfig(max_new_tokens=4, min_new_tokens=5)


def test_stops_at_a_stop_string(model):
    expected = generate(model, [PROMPTS[0]], GREEDY)[0].tokens
    decode = lambda ids: "".join(f"<{i}>" for i in ids)  # noqa: E731
    stop = f"<{expected[4]}>"
    completion = generate(model, [PROMPTS[0]], GREEDY, stop_strings=[stop], decode=decode)[0]
    assert completion.finish_reason == "stop_string"
    assert completion.tokens == expected[: expected.index(expected[4]) + 1]
    assert cut_at_stop(decode(completion.tokens), [stop]) == decode(completion.tokens[:-1])


def test_stream_reports_probabilities_and_alternatives(model):
    events = list(
        stream(model, [PROMPTS[1]], SamplingConfig(max_new_tokens=3, temperature=0), alternatives=5)
    )
    assert len(events) == 3 and events[-1].finish_reason == "length"
    for event in events:
        ids = [token for token, _ in event.alternatives]
        probs = [p for _, p in event.alternatives]
        assert len(ids) == 5 and ids[0] == event.token  # greedy picks the top one
        assert probs == sorted(probs, reverse=True) and probs[0] == pytest.approx(event.probability)


def test_bad_requests_are_refused(model):
    with pytest.raises(ValueError, match="exceeds the model's context \\(block_size=128\\)"):
        generate(model, [[1] * 100], SamplingConfig(max_new_tokens=29))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, [[1], []], GREEDY)
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ValueError, match="stop_strings need a decode"):
        generate(model, [[1]], GREEDY, stop_strings=["x"])


def test_generation_from_a_config_not_a_checkpoint():
    model = GPT(GPTConfig(vocab_size=100, block_size=32, n_layer=1, n_head=2, n_embd=16))
    assert len(generate(model, [[1, 2]], SamplingConfig(max_new_tokens=5, seed=0))[0].tokens) == 5


def test_sampling_restores_the_callers_training_mode(model):
    model.train()
    generate(model, [[1, 2]], SamplingConfig(max_new_tokens=2, temperature=0))
    assert model.training
    model.eval()
    generate(model, [[1, 2]], SamplingConfig(max_new_tokens=2, temperature=0))
    assert not model.training


def test_stream_refuses_bad_requests_before_the_first_token(model):
    # Raised by the call itself, so a CLI never prints half an answer before the error.
    with pytest.raises(ValueError, match="exceeds the model's context"):
        stream(model, [[1] * 100], SamplingConfig(max_new_tokens=29))
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        stream(model, [[]], GREEDY)
