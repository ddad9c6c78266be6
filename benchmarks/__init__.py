"""Speed and memory measurements against a named peer, in the same process run."""
