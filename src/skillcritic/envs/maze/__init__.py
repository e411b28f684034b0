"""Point-mass maze (MuJoCo): layouts, tasks, agent-centric views and the demonstration controller."""
