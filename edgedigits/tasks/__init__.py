"""edgedigits.tasks."""
