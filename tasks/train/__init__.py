"""The train stage: pretraining and fine-tuning GPT-2 on token shards, resumable."""
