"""`python -m pipelines.cli`: the `gpt2lab` command."""

from pipelines.cli import main

main()
