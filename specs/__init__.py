"""The connection state-machine specs shipped with wskit (YAML data files)."""
