"""alphawatch.daemon."""
