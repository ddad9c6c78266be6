"""The encode stage: a corpus dataset -> token shards that training streams from."""
