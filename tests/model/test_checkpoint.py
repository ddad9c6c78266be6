"""Checkpoints: our format, Hugging Face folders both ways, and the errors users will meet."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import (
    GPT,
    CheckpointError,
    GPTConfig,
    export_hf_folder,
    load_model,
    save_checkpoint,
)

SMALL = GPTConfig(vocab_size=500, block_size=64, n_layer=2, n_head=4, n_embd=32)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_import_of_a_transformers_folder_gives_the_same_logits(hf_model, hf_folder, random_tokens):
    ours = load_model(hf_folder).eval()
    with torch.no_grad():
        expected = hf_model(random_tokens).logits
        logits, _ = ours(random_tokens)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert ours.config.n_layer == 2 and ours.config.vocab_size == 50257


def test_import_of_a_legacy_pytorch_model_bin(hf_model, random_tokens, tmp_path):
    """Old hub uploads: pytorch_model.bin, no `transformer.` prefix, mask buffers included."""
    state = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    state.pop("lm_head.weight")
    for i in range(hf_model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 128, 128).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    hf_model.config.to_json_file(tmp_path / "config.json")

    ours = load_model(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            ours(random_tokens)[0], hf_model(random_tokens).logits, atol=1e-4, rtol=0
        )


def test_export_loads_in_transformers_with_equal_logits(hf_folder, random_tokens, tmp_path):
    from transformers import GPT2LMHeadModel

    ours = load_model(hf_folder).eval()
    export_hf_folder(ours, tmp_path / "exported")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            theirs(random_tokens).logits, ours(random_tokens)[0], atol=1e-4, rtol=0
        )


def test_own_format_round_trips_exactly_and_overwrites_atomically(tmp_path):
    model = GPT(SMALL)
    folder = tmp_path / "ckpt"
    save_checkpoint(model, folder, metadata={"step": 1})
    save_checkpoint(model, folder, metadata={"step": 2})  # replaces, leaves no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert sorted(p.name for p in folder.iterdir()) == ["gpt2lab.json", "model.safetensors"]
    assert json.loads((folder / "gpt2lab.json").read_text())["metadata"] == {"step": 2}

    loaded = load_model(folder)
    assert loaded.config == SMALL
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    save_checkpoint(GPT(SMALL), folder, metadata={"step": 1})

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("model.checkpoint.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(GPT(SMALL), folder, metadata={"step": 2})
    assert json.loads((folder / "gpt2lab.json").read_text())["metadata"] == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    load_model(folder)


def test_missing_weights_file_is_named(tmp_path):
    save_checkpoint(GPT(SMALL), tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "a")
    assert "no model.safetensors" in _one_line(err) and str(tmp_path / "a") in str(err.value)


def test_hf_folder_without_weights_is_named(hf_folder, tmp_path):
    (tmp_path / "config.json").write_text((hf_folder / "config.json").read_text())
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    assert "no weights (model.safetensors or pytorch_model.bin)" in _one_line(err)


def test_folder_in_neither_layout_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    assert str(tmp_path) in _one_line(err) and "neither a gpt2lab checkpoint" in str(err.value)


def test_mismatched_shape_names_the_tensor_and_both_shapes(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(GPT(SMALL), folder)
    state = load_file(folder / "model.safetensors")
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(100, 32)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    message = _one_line(err)
    assert "'transformer.h.1.mlp.c_fc.weight' has shape (100, 32)" in message
    assert "needs (128, 32)" in message


def test_config_that_disagrees_with_the_weights(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(GPT(SMALL), folder)
    payload = json.loads((folder / "gpt2lab.json").read_text())
    payload["config"]["n_layer"] = 3
    (folder / "gpt2lab.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "missing weight 'transformer.h.2." in _one_line(err)


def test_invalid_config_values_name_the_file_and_field(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(GPT(SMALL), folder)
    payload = json.loads((folder / "gpt2lab.json").read_text())
    payload["config"]["n_head"] = 5
    (folder / "gpt2lab.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "gpt2lab.json" in _one_line(err) and "n_embd (32)" in str(err.value)


def test_unsupported_hf_variant_is_refused(hf_folder, tmp_path):
    config = json.loads((hf_folder / "config.json").read_text())
    config["activation_function"] = "relu"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((hf_folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    assert "activation_function='relu'" in _one_line(err)


def test_hub_id_while_offline_is_a_clear_error():
    # conftest sets HF_HUB_OFFLINE=1 and an empty HF_HOME: nothing is cached.
    with pytest.raises(CheckpointError) as err:
        load_model("openai-community/gpt2")
    message = _one_line(err)
    assert "'openai-community/gpt2'" in message and "offline" in message
    assert "pass a local folder with gpt2lab.json" in message


def test_missing_path_is_named():
    with pytest.raises(CheckpointError, match="no such checkpoint folder: ./nowhere/ckpt"):
        load_model("./nowhere/ckpt")


def test_checkpoints_can_carry_their_tokenizer(tmp_path, gpt2_vocab_dir, hf_folder):
    from transformers import GPT2TokenizerFast

    from model import load_tokenizer

    tokenizer = load_tokenizer(gpt2_vocab_dir)
    model = load_model(hf_folder)
    save_checkpoint(model, tmp_path / "ours", tokenizer=tokenizer)
    assert load_tokenizer(tmp_path / "ours").fingerprint == tokenizer.fingerprint

    export_hf_folder(model, tmp_path / "hf", tokenizer=tokenizer)
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    theirs = GPT2TokenizerFast.from_pretrained(tmp_path / "hf")
    text = "Hello world, it's 2026!\n\tdef f(x): return x ** 2"
    assert theirs(text)["input_ids"] == tokenizer.encode(text)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 50256
