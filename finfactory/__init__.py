"""FinFactory: reusable fintech primitives with an event-driven kernel.

Public entry points live in the subpackages: :mod:`finfactory.kernel`,
:mod:`finfactory.events`, :mod:`finfactory.primitives.ledger`,
:mod:`finfactory.adapters.sqlalchemy` and :mod:`finfactory.testing`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
