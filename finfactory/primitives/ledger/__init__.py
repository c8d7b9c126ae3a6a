"""FinFactory."""
