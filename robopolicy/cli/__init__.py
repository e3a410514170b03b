"""Command-line entry points (Hydra). Each module's ``main`` is a console script."""
