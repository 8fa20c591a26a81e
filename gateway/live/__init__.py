"""Live changes for the care team's screens: the event bus the API streams subscribe to."""
