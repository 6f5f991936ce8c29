"""The one error type users see for bad input: it names the file, the dotted key path and what is allowed."""
from __future__ import annotations


class ScenarioError(Exception):
    """Bad user input (scenario YAML, --set override, trace, profile, CLI flag).

    `source` is the file (or flag) the input came from, `path` the dotted key path inside it
    ("" for the whole file) and `message` says what is wrong and what is allowed.
    `details` holds further problems found in the same input.
    """

    def __init__(self, source: str, path: str, message: str, details: list[str] | None = None):
        self.source = str(source)
        self.path = path
        self.message = message
        self.details = list(details or [])
        super().__init__(self.format())

    def format(self) -> str:
        head = f"{self.source}: {self.path}: {self.message}" if self.path else f"{self.source}: {self.message}"
        return "\n".join([head, *self.details])


def shown(value) -> str:
    """Returns repr(value) as a user would write it: numpy scalars as plain numbers ('-1.0', not
    'np.float64(-1.0)'), long values cut to 60 characters."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
