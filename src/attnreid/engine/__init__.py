"""Training: the Lightning module, optimisers, checkpoints, callbacks, train(), several seeds."""
