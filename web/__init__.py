"""alphawatch.web."""
