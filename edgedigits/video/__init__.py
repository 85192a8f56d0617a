"""Video: capture, the frame pipeline, overlays, the window and the run summary."""
