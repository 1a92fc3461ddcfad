"""The speed-ups as ordered, removable wrappers, kept in one registry per pipeline (or model).

Learnt from diffusers' ``HookRegistry``/``ModelHook`` (``diffusers/hooks/hooks.py``): a speed-up is
a :class:`ModelHook` whose :meth:`~ModelHook.new_forward` wraps one call of one module (a UNet's
``forward``, a VAE's ``decode``, a CLAP's ``get_text_features``), registered under a name with
:meth:`HookRegistry.register_hook` and taken off with :meth:`HookRegistry.remove_hook`. Two things
differ from diffusers:

- one registry holds every wrapper of a pipeline, whichever module it wraps
  (``HookRegistry.of(pipe)``), so that turning a speed-up off is one place to look;
- the nesting is fixed by each hook's :attr:`~ModelHook.order` (the thread split innermost, then the
  oneDNN predictors, then low-memory mode's stage swap outermost), not by the order of
  registration: a speed-up switched on later still sits where it belongs.

Removing the last wrapper of a call gives the module back exactly what it had: its class's method
again (no instance attribute left), or the instance attribute it held before.

No paddle here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["ModelHook", "HookRegistry", "SPLIT", "PREDICTOR", "STAGE_SWAP"]

SPLIT = 10
"""Order of the thread split (:mod:`.threads`): nearest the module's own call."""
PREDICTOR = 20
"""Order of the oneDNN predictors (:mod:`.onednn`): their dygraph fallback runs the split."""
STAGE_SWAP = 30
"""Order of low-memory mode's stage swap (:mod:`.lowmem`): the weights are back before anything runs."""


class ModelHook:
    """One wrapper around one call of a module.

    Subclasses override :meth:`new_forward` and set :attr:`order`.

    Attributes
    ----------
    order : int
        Lower sits nearer the module's own call (:data:`SPLIT` < :data:`PREDICTOR` < :data:`STAGE_SWAP`).
    """

    order: int = 0

    def new_forward(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped call; ``call`` is the next one inward (the module's own, or another hook)."""
        return call(*args, **kwargs)


@dataclasses.dataclass
class _Target:
    """One call of one module and the hooks around it."""

    module: Any
    attr: str
    original: Callable[..., Any]  # what ``getattr(module, attr)`` gave before the first hook
    had_own: bool  # whether the instance held ``attr`` itself (else the class's method)
    names: list[str] = dataclasses.field(default_factory=list)


class HookRegistry:
    """The wrappers of one pipeline (or one model), by name.

    Get it with :meth:`of`; it lives on the owner as ``_mgtoolkit_hooks``.

    Attributes
    ----------
    applied : dict
        ``{feature: [lines]}``: what each speed-up that is on reports (an empty list: on, with
        nothing to wrap, such as a thread split on one core).

    Examples
    --------
    >>> class Module:
    ...     def forward(self, x):
    ...         return x + 1
    >>> class Twice(ModelHook):
    ...     def new_forward(self, call, x):
    ...         return 2 * call(x)
    >>> m = Module()
    >>> registry = HookRegistry()
    >>> registry.register_hook(Twice(), "twice", m)
    >>> m.forward(1)
    4
    >>> registry.remove_hook("twice")
    >>> m.forward(1), "forward" in vars(m)
    (2, False)
    """

    def __init__(self) -> None:
        self._hooks: dict[str, tuple[ModelHook, tuple[int, str], int]] = {}
        self._targets: dict[tuple[int, str], _Target] = {}
        self._registered = 0
        self.applied: dict[str, list[str]] = {}

    @classmethod
    def of(cls, owner: Any) -> HookRegistry:
        """The registry of ``owner`` (a pipeline or a model), made on first use."""
        registry = getattr(owner, "_mgtoolkit_hooks", None)
        if registry is None:
            registry = cls()
            owner._mgtoolkit_hooks = registry
        return registry

    def register_hook(self, hook: ModelHook, name: str, module: Any, attr: str = "forward") -> None:
        """Wrap ``module.<attr>`` in ``hook``, at the place its :attr:`~ModelHook.order` gives.

        Raises
        ------
        ValueError
            If ``name`` is registered already: remove it first.
        """
        if name in self._hooks:
            raise ValueError(f"hook {name!r} is registered already; remove_hook({name!r}) first")
        key = (id(module), attr)
        target = self._targets.get(key)
        if target is None:
            target = _Target(module, attr, getattr(module, attr), attr in vars(module))
            self._targets[key] = target
        self._hooks[name] = (hook, key, self._registered)
        self._registered += 1
        target.names.append(name)
        self._rewrap(target)

    def remove_hook(self, name: str) -> None:
        """Take hook ``name`` off (nothing if it is not registered); the others keep their order."""
        entry = self._hooks.pop(name, None)
        if entry is None:
            return
        target = self._targets[entry[1]]
        target.names.remove(name)
        self._rewrap(target)

    def remove_hooks(self, prefix: str) -> None:
        """Take off every hook whose name starts with ``prefix`` (one speed-up's, e.g. ``"threads/"``)."""
        for name in self.names(prefix):
            self.remove_hook(name)

    def get_hook(self, name: str) -> ModelHook | None:
        entry = self._hooks.get(name)
        return entry[0] if entry is not None else None

    def names(self, prefix: str = "") -> list[str]:
        """The registered names starting with ``prefix``, in registration order."""
        return [n for n in self._hooks if n.startswith(prefix)]

    def chain(self, module: Any, attr: str = "forward") -> list[str]:
        """The names wrapping ``module.<attr>``, innermost first."""
        target = self._targets.get((id(module), attr))
        return [] if target is None else self._ordered(target)

    def _ordered(self, target: _Target) -> list[str]:
        return sorted(target.names, key=lambda n: (self._hooks[n][0].order, self._hooks[n][2]))

    def _rewrap(self, target: _Target) -> None:
        """Put ``target``'s call back together from its original and its hooks (none: as it was).

        Written into the instance's ``__dict__``, past the class's ``__setattr__``: paddlenlp's
        models rewrite a ``forward`` they are given when its signature lacks their arguments.
        """
        module, attr = target.module, target.attr
        own = vars(module)
        if not target.names:
            del self._targets[(id(module), attr)]
            if target.had_own:
                own[attr] = target.original
            else:
                own.pop(attr, None)
            return
        call = target.original
        for name in self._ordered(target):
            call = _wrapped(self._hooks[name][0], call)
        own[attr] = call


def _wrapped(hook: ModelHook, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return hook.new_forward(call, *args, **kwargs)

    return wrapper
