"""The primitive families. Importing this package registers every primitive."""
from . import elementwise, shapes, reductions  # noqa: F401
