"""The label classes, defined once: their values in the ``label`` array and their names.

The values are what the labelling stage paints and what the model predicts: class ``k`` is the model's
output channel ``k``. Pixels labelled :data:`IGNORE` are seen by no loss and no metric: the ring around
every painted object, where a catalogue radius cannot tell object from sky, and pixels outside ``valid``.
"""

from __future__ import annotations

SKY = 0
STAR = 1
GALAXY = 2
IGNORE = 255

# Names of the predicted classes, in the order of their values (the model's output channels).
CLASS_NAMES: tuple[str, ...] = ("sky", "star", "galaxy")
# The classes a catalogue lists: every catalogue object is one of them.
OBJECT_CLASSES: tuple[str, ...] = ("star", "galaxy")
# Every value the ``label`` array holds, by name.
LABEL_VALUES: dict[str, int] = {"sky": SKY, "star": STAR, "galaxy": GALAXY, "ignore": IGNORE}
