"""Point-mass maze (MuJoCo): layouts, tasks, agent-centric views, demonstration controller."""
