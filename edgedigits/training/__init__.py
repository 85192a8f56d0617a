"""Training: the architectures (``architectures``), the tf.data training loop (``loop``) and
the number reader's line training (``number_reader``)."""
