"""One module per CLI verb (or verb family); each exports COMMANDS for podtui.cli."""
