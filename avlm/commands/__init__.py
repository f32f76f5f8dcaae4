"""Subcommands of the ``avlm`` console script; each module has ``add_arguments(parser)`` and ``run(args)``."""
