"""Frequently bought together: co-purchase and co-view counts per item pair, decayed by event
time and fenced by offset, scored by lift (``profiles/together/``)."""
