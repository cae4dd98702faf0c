"""The primitive families. Importing this package registers every primitive."""
from . import elementwise, shapes, reductions, indexing, linalg, conv, windowed, sort, control_flow  # noqa: F401
