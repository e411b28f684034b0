"""Racing (the Gran Turismo Sport corner task, rebuilt on an open simulator; numpy only).

- ``track``: closed spline tracks (the fixed target track with its ``corner`` segment, and
  procedural ones), course position, wall rays.
- ``car``: the GT car's parameters and its vectorised dynamic / kinematic bicycle model.
- ``sim``: N cars on one track at 10 Hz / 60 Hz, walls, laps, the 36 GTS features.
- ``env``: ``skillcritic/Racing-v0`` (``corner`` and ``lap`` tasks) and its ``VectorEnv``.
- ``driver``: the built-in AI (speed profile, pure pursuit, speed control).
- ``demos``: the AI's demonstrations for ``skillcritic-data env=racing``.
- ``render``: top-down frames.
"""
