"""The preference stage: human comparisons of model outputs, and what they say."""
