"""Hidden suites: run only when the instructor grades; never show expected values or source."""
