"""Models that ship with aotcheck."""
