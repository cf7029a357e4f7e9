"""Where problems come from: built-in tasks, reasoning-gym, users' datasets and imported generations."""
