"""The corpus funnel, WebText style: links -> fetch -> extract -> filter -> deduplicate.

Each step is a small module with one job; each says, for every link or document it drops,
which stage dropped it and why.
"""
