"""GPT-2's byte-level BPE tokenizer: fast (tiktoken), reference (pure Python), and training.

load_tokenizer(folder_or_hub_id) -> Tokenizer   the one to use: fast, checked
ReferenceBPE(folder)                             the same algorithm, readable, slow
train_bpe(texts, vocab_size, out_dir)            learn a new vocabulary, GPT-2 style
"""

from model.tokenizer.gpt2_bpe import Tokenizer, TokenizerError, load_tokenizer
from model.tokenizer.reference_bpe import ReferenceBPE
from model.tokenizer.train import train_bpe

__all__ = ["ReferenceBPE", "Tokenizer", "TokenizerError", "load_tokenizer", "train_bpe"]
