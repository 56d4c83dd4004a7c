"""The model objects: :class:`Network`, :class:`Trainer` and model files, over the engine."""
