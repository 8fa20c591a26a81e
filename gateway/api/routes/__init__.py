"""The API's routes, one module per area of the care team's work."""
