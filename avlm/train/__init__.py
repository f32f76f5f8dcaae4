"""Training: the recipe dataclasses, the accelerate loop, atomic checkpoints and resume (``avlm train``).

``avlm.train.config`` imports no torch; the loop (:func:`avlm.train.loop.train`) is imported on use.
"""
