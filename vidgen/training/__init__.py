"""Training: losses, callbacks, the model factory and the `vidgen train` entry."""
