"""Public suites: shipped to students; may show expected values."""
