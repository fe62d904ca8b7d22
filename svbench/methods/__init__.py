"""Registered methods. Adding a method = one file here + one import below; the contract tests pick it up."""

from svbench.methods import cayley, gram, none, power, reference, sedghi, tt  # noqa: F401  (registration side effect)
from svbench.methods.base import METHODS, Capabilities, LayerSpec, Method, seeded_conv

__all__ = ["METHODS", "Capabilities", "LayerSpec", "Method", "create_method", "list_methods", "seeded_conv"]


def create_method(name: str, **options) -> Method:
    """Instantiate a registered method with validated config options (unknown name/key -> UserError)."""
    return METHODS.get(name).from_options(options)


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)
