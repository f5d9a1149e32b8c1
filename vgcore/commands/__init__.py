"""The subcommands of ``vgcore``; each module has ``register(subparsers)`` and ``run(args)``."""
COMMANDS = ("compare", "demo", "profile", "theory", "bench")
