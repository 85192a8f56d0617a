"""edgedigits.image."""
