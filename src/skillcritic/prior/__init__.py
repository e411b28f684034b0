"""prior stage."""
