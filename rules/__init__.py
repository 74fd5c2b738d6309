"""alphawatch.rules."""
