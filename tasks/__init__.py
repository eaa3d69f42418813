"""Research tasks run by sheetrun (each a script with a default config in default_configs/)."""
