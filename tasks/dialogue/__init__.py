"""Persona-conditioned dialogue (PERSONA-CHAT): how a conversation becomes model text.

One plain-text layout serves fine-tuning (`gpt2lab finetune --format persona-chat`), the
`personachat` eval task and `gpt2lab chat`, so the model is always asked to reply in the
shape it was trained on. `format` builds the text; `data` reads the dataset's files."""
