"""The subcommands of ``vgcore``; each module has ``register(subparsers)`` and ``run(args)``."""
COMMANDS = ("compare", "sweep", "demo", "profile", "theory", "bench")
