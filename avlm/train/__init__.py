"""Training: the recipe dataclasses, the accelerate loop, atomic checkpoints and resume (``avlm train``).

Modules: ``config`` (the Recipe), ``setup`` (model, policy, data, optimizer, schedule), ``stages`` (the timed
forward and the dummy-encoder rule), ``loop`` (:func:`avlm.train.loop.train`), ``checkpoints``, ``stream``,
``metrics``, ``final``, ``distributed``, ``budget`` (media tokens per record). Nothing is imported here:
``avlm.train.recipe`` loads without transformers or accelerate.
"""
