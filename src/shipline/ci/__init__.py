"""CI adapters: git change detection, image builders, scanners."""
