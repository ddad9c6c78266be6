"""The network itself: shapes, presets, the two attention paths, init, loss, dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model import GPT, PRESETS, GPTConfig
from model.loss import IGNORE_INDEX, chunked_cross_entropy

SMALL = GPTConfig(vocab_size=500, block_size=64, n_layer=2, n_head=4, n_embd=32)


@pytest.mark.parametrize(
    "name, expected",
    [
        # Parameter counts of the released GPT-2 checkpoints (tied embeddings counted once).
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
    ],
)
def test_presets_match_released_gpt2_sizes(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPT(PRESETS[name])
    assert model.num_parameters() == expected


def test_bad_config_is_a_one_line_error_naming_the_fields():
    with pytest.raises(ValueError) as err:
        GPTConfig(n_embd=100, n_head=12)
    message = str(err.value)
    assert "n_embd (100)" in message and "n_head (12)" in message and "\n" not in message
    with pytest.raises(ValueError, match="unknown model preset 'gpt3'"):
        GPTConfig.preset("gpt3")
    with pytest.raises(ValueError, match="unknown GPTConfig field.*n_ctx"):
        GPTConfig.from_dict({"n_ctx": 10})


def test_forward_shapes_and_weight_tying():
    model = GPT(SMALL)
    idx = torch.randint(0, 500, (2, 16))
    logits, loss = model(idx)
    assert logits.shape == (2, 16, 500) and loss is None
    assert model.lm_head.weight is model.transformer.wte.weight
    # A fresh model predicts close to uniform: loss near ln(vocab).
    _, loss = model(idx, torch.randint(0, 500, (2, 16)))
    assert abs(loss.item() - torch.log(torch.tensor(500.0)).item()) < 0.5


def test_both_attention_paths_give_equal_outputs():
    torch.manual_seed(0)
    fast = GPT(SMALL).eval()
    explicit = GPT(SMALL.replace(attention="explicit")).eval()
    explicit.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 500, (3, 33))
    mask = torch.ones(3, 33, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        torch.testing.assert_close(fast(idx)[0], explicit(idx)[0], atol=1e-5, rtol=1e-5)
        h_fast, _ = fast.hidden_states(idx, attention_mask=mask)
        h_explicit, _ = explicit.hidden_states(idx, attention_mask=mask)
    torch.testing.assert_close(h_fast, h_explicit, atol=1e-5, rtol=1e-5)


def test_attention_maps_are_causal_distributions():
    model = GPT(SMALL)
    maps = model.attention_maps(torch.randint(0, 500, (1, 12)))
    assert len(maps) == SMALL.n_layer and maps[0].shape == (1, SMALL.n_head, 12, 12)
    for weights in maps:
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, SMALL.n_head, 12))
        future = torch.ones(12, 12, dtype=torch.bool).triu(1)
        assert weights[..., future].abs().max() == 0  # nothing flows from the future


def test_changing_a_future_token_does_not_change_earlier_logits():
    model = GPT(SMALL).eval()
    idx = torch.randint(0, 500, (1, 20))
    changed = idx.clone()
    changed[0, 15] = (idx[0, 15] + 1) % 500
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


def test_gpt2_initialisation_scales_residual_projections():
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=8, n_head=4, n_embd=256)
    model = GPT(config)
    attn_proj = model.transformer.h[0].attn.c_proj.weight
    qkv = model.transformer.h[0].attn.c_attn.weight
    assert abs(qkv.std().item() - 0.02) < 0.002
    assert abs(attn_proj.std().item() - 0.02 / (2 * 8) ** 0.5) < 0.001
    assert model.transformer.h[0].attn.c_attn.bias.abs().max() == 0


def test_dropout_is_active_only_in_training():
    model = GPT(SMALL.replace(dropout=0.5))
    idx = torch.randint(0, 500, (2, 10))
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0])


def test_chunked_loss_equals_plain_cross_entropy_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(101, 16, requires_grad=True)
    targets = torch.randint(0, 101, (37,))
    targets[[3, 20]] = IGNORE_INDEX

    ours = chunked_cross_entropy(hidden, weight, targets, chunk_size=8)
    (grad_h, grad_w) = torch.autograd.grad(ours * 3.0, (hidden, weight))
    plain = F.cross_entropy(hidden @ weight.t(), targets, ignore_index=IGNORE_INDEX)
    (ref_h, ref_w) = torch.autograd.grad(plain * 3.0, (hidden, weight))

    torch.testing.assert_close(ours, plain)
    torch.testing.assert_close(grad_h, ref_h)
    torch.testing.assert_close(grad_w, ref_w)


def test_model_loss_and_gradients_match_the_full_logits_path():
    torch.manual_seed(0)
    model = GPT(SMALL)
    idx, targets = torch.randint(0, 500, (2, 24)), torch.randint(0, 500, (2, 24))
    _, chunked = model(idx, targets)
    chunked.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logits, full = model(idx, targets, return_logits=True)
    full.backward()
    assert logits.shape == (2, 24, 500)
    torch.testing.assert_close(chunked, full)
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, msg=name)


def test_sequence_longer_than_the_context_is_refused():
    model = GPT(SMALL)
    with pytest.raises(ValueError, match="longer than the model's context \\(block_size=64\\)"):
        model(torch.zeros(1, 65, dtype=torch.long))
