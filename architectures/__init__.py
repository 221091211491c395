"""The built-in architecture zoo, imported as ``gonprof.architectures``.

Each module registers its builders with :func:`gonprof.arch.register_arch`.
The modules are loaded through the ``gonprof.architectures`` entry point group
declared in pyproject.toml: the same path a third-party plugin takes.
"""
