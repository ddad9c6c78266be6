"""Preference tuning: a reward model and DPO, trained on the comparisons people made."""
