"""Banned APIs refused at run time, inside the grading worker.

`install` replaces each of a chapter's banned torch callables with a guard, wherever torch's
own modules bind that same object (`torch.softmax` is also `torch._VF.softmax`, `F.gelu` is
also `torch._C._nn.gelu`, `torch.special.softmax` is also `torch._C._special.special_softmax`):
a function is swapped for its guard in every loaded `torch.*` module namespace that holds it,
a `Tensor.NAME` method is set on `torch.Tensor`, and a class gets its `__init__` guarded in
place (so `isinstance` keeps working and a subclass calling `super().__init__` is caught).
Every route a student takes to the same object (an attribute, `getattr(torch, "soft" +
"max")`, `importlib.import_module`, an alias saved at import) ends in the guard.

A guard walks the Python stack up from its caller, frame by frame, and asks whose code it is:
  * the chapter's own modules (`own_files`): banned, reported at that frame's line;
  * torch, the standard library, site-packages (the folders on `sys.path` when `install`
    runs, before the student's folder joins it): the walk goes on, so torch running a banned
    function on the student's behalf (`F.softmin` calls `Tensor.softmax`, `vmap` calls back)
    is caught at the student's line, and torch's own uses with no student code above are not;
  * trusted code (`_child.py`'s harness helpers, earlier chapters' modules): allowed, so
    chapter 06's trusted loss may call `F.cross_entropy` inside a student's train step;
  * the rest of `_child.py` (the grader's dispatch): the student's module handed the banned
    object itself to the grader (`softmax = getattr(torch, "soft" + "max")`): banned;
  * any other code (exec'd strings, the student's helper modules, files written at run time):
    banned, reported at the nearest own-module frame above it if there is one;
  * the top of the stack, none of the above met: a thread or callback the student's code
    set up (the main thread's stack always starts in `_child.py`): banned.
A banned call raises `BannedCall`, whose message is the static scan's line (as
`static.Violation.describe` writes it), and is also kept for `Guard.take()`, so a student's
code that catches the exception still fails the request.

What this does not stop (the guards run in the student's own interpreter: a tripwire for
evasion, not a security boundary; the static scan and a reader of the code remain):
  * the same implementation reached where no namespace is patched: `torch._C._VariableFunctions
    .softmax` and `torch._C.TensorBase.softmax` (C types, read-only), `super(torch.Tensor, x)
    .softmax`, `torch.ops.aten._softmax` and the other operator overloads, tables torch keeps
    (`torch.jit._builtins`), and the original in each guard's closure (`guard.__closure__`);
  * a banned class's methods other than `__init__` (`nn.Softmax.__new__(nn.Softmax)`, then
    `forward`) unless they call a guarded function, and the same computation under names the
    chapter does not ban (`torch.optim.adam.adam`, `torch._refs.softmax`, `torch.layer_norm`);
  * torch's source executed again (`importlib.reload(torch.nn.functional)`): fresh, unguarded
    functions, caught only where they call a guarded one (as `F.softmax` calls `Tensor.softmax`);
  * code compiled with a file name inside torch or the standard library, which passes as theirs;
  * the harness helpers, trusted wherever they are called from: a student's code that calls
    `sys.modules["__main__"].harness_loss()` gets PyTorch's cross-entropy;
  * the student's code putting the originals back before it calls them.
When one object has several banned names (`torch.relu_` is `F.relu_`), the message names the
first in the chapter's list.
"""

from __future__ import annotations

import importlib
import os
import sys

OWN, TRUSTED, LIBRARY, GRADER, FOREIGN = "own", "trusted", "library", "grader", "foreign"


class BannedCall(Exception):
    """A banned API reached from the student's code; the message says where and which."""


def describe(module: str, line: int, owner: str, name: str) -> str:
    """The static scan's text for one hit (as `static.Violation.describe` writes it)."""
    where = f" in {owner}" if owner else ""
    return f"{module}.py line {line}{where} uses {name}, which this chapter bans"


class Guard:
    """Decides, for each call of a guarded object, whose code made it; keeps the first banned
    call until `take`."""

    def __init__(self, own_files: dict[str, str], kinds: dict[str, str], helpers: list) -> None:
        self.own_files = dict(own_files)  # path -> module name
        self._kinds = kinds  # file name -> kind, filled in as new file names are met
        self._library = tuple(os.path.join(p, "") for p in sys.path if p and os.path.isabs(p))
        self._helpers = helpers  # kept alive, so the ids of their code objects stay theirs
        self._helper_codes = set().union(*(_codes(helper.__code__) for helper in helpers))
        self._tripped: BannedCall | None = None

    def take(self) -> BannedCall | None:
        """The first banned call since the last take, raised or caught (None if there was none)."""
        tripped, self._tripped = self._tripped, None
        return tripped

    def check(self, frame, name: str, target) -> None:
        """Raise BannedCall if the call of `name` made from `frame` comes from the student's
        code; `target` is the object a student's module would hold (the guard, or the class)."""
        culprit = None  # the first frame of unknown code: blamed unless an own frame is met above it
        while frame is not None:
            kind = self._kind(frame.f_code)
            if kind == OWN:
                self._trip(self._at(frame, name))
            if kind == TRUSTED:
                break
            if kind == GRADER:
                self._trip(self._at(culprit, name) if culprit is not None else self._handed(name, target))
            if kind == FOREIGN and culprit is None:
                culprit = frame
            frame = frame.f_back
        else:
            first = next(iter(self.own_files.values()), "your module")
            self._trip(self._at(culprit, name) if culprit is not None
                       else f"{first}.py uses {name} on a thread of its own, which this chapter bans")
        if culprit is not None:
            self._trip(self._at(culprit, name))

    def _kind(self, code) -> str:
        if id(code) in self._helper_codes:
            return TRUSTED
        filename = code.co_filename
        kind = self._kinds.get(filename)
        if kind is None:
            library = filename.startswith("<frozen ") or filename.startswith(self._library)
            kind = self._kinds[filename] = LIBRARY if library else FOREIGN
        return kind

    def _at(self, frame, name: str) -> str:
        """The scan's text for a banned call made at `frame`'s current line."""
        code = frame.f_code
        module = self.own_files.get(code.co_filename) or _module_label(frame)
        owner = code.co_qualname.split(".")[0]  # the top-level def or class; "<module>" at module level
        return describe(module, frame.f_lineno, "" if owner.startswith("<") else owner, name)

    def _handed(self, name: str, target) -> str:
        """The text for a banned object the grader called itself: the name a student's module
        bound it to (at top level, or in one of its classes)."""
        for module_name in self.own_files.values():
            namespace = getattr(sys.modules.get(module_name), "__dict__", {})
            for key, value in list(namespace.items()):
                if _is(value, target):
                    return f"{module_name}.py binds {key} to {name}, which this chapter bans"
                if isinstance(value, type) and value.__module__ == module_name:
                    for attr, member in list(vars(value).items()):
                        if _is(getattr(member, "__func__", member), target):
                            return f"{module_name}.py binds {key}.{attr} to {name}, which this chapter bans"
        first = next(iter(self.own_files.values()), "your module")
        return f"{first}.py gives the grader {name} to call, which this chapter bans"

    def _trip(self, message: str) -> None:
        error = BannedCall(message)
        if self._tripped is None:
            self._tripped = error
        raise error


def _is(value, target) -> bool:
    """`value` is `target`, or a subclass of it when `target` is a class."""
    if value is target:
        return True
    return isinstance(target, type) and isinstance(value, type) and issubclass(value, target)


def _module_label(frame) -> str:
    """A name for code outside the chapter's files: its module's `__name__`, else its file's."""
    name = frame.f_globals.get("__name__")
    if isinstance(name, str) and name:
        return name
    return os.path.splitext(os.path.basename(frame.f_code.co_filename))[0]


def _codes(code) -> set[int]:
    """Ids of `code` and of every code object defined inside it (nested functions, lambdas)."""
    found = {id(code)}
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            found |= _codes(const)
    return found


def install(torch, banned: list[str], own_files: dict[str, str], *, grader_file: str, helpers=(),
            uses_files=()) -> Guard:
    """Guard every object `banned` names (as in `chapters.py`: `torch.softmax`, `Tensor.softmax`,
    `torch.nn.MultiheadAttention`); names this torch lacks are skipped.

    `own_files` maps the path of each of the chapter's module files, as the worker imports
    them, to the module name. `grader_file` is `_child.py`: its `helpers` (functions, with
    everything defined inside them) are trusted, the rest of it is the grader's dispatch.
    `uses_files` are earlier chapters' module files, trusted too. Call it after `import torch`
    and before the student's folder joins `sys.path`: code from the folders on `sys.path` now
    counts as a library's.
    """
    kinds = {path: OWN for path in own_files}
    kinds.update({path: TRUSTED for path in uses_files})
    kinds[grader_file] = GRADER
    kinds[__file__] = LIBRARY  # a guard's own frame, when one guarded call leads to another
    guard = Guard(own_files, kinds, list(helpers))
    functions: dict[int, tuple[str, object]] = {}  # id(original) -> (its first banned name, original)
    for name in banned:
        original = _resolve(torch, name)
        if original is None:
            continue
        if name.startswith("Tensor."):
            setattr(torch.Tensor, name.split(".", 1)[1], _guarded(guard, original, name, None))
        elif isinstance(original, type):
            original.__init__ = _guarded(guard, original.__init__, name, original)
        elif callable(original):
            functions.setdefault(id(original), (name, original))
    if functions:
        _replace_everywhere(torch, guard, functions)
    return guard


def _resolve(torch, name: str):
    """The object `name` names, importing torch submodules on the way; None if there is none."""
    head, *parts = name.split(".")
    obj = torch.Tensor if head == "Tensor" else torch
    for index, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(".".join([head, *parts[: index + 1]]))
            except ImportError:
                return None
    return obj


def _guarded(guard: Guard, original, name: str, cls):
    """A function that checks its caller, then calls `original`. `cls`: the class whose
    `__init__` it stands for (what a student's module would hold), else None."""

    def guarded(*args, **kwargs):
        guard.check(sys._getframe(1), name, cls if cls is not None else guarded)
        return original(*args, **kwargs)

    # No `__wrapped__`: `inspect.unwrap` would hand the original over for free.
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(guarded, attr, getattr(original, attr))
        except (AttributeError, TypeError):
            pass
    return guarded


def _replace_everywhere(torch, guard: Guard, functions: dict[int, tuple[str, object]]) -> None:
    """Swap each original for its guard in every loaded torch module that binds it."""
    guards = {key: _guarded(guard, original, name, None) for key, (name, original) in functions.items()}
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not (module_name == "torch" or module_name.startswith("torch.")) or not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            key = id(value)
            if key in guards and value is functions[key][1]:
                namespace[attr] = guards[key]
    # `torch._VF.NAME` is looked up on `torch._C._VariableFunctions` (read-only) at each access:
    # an attribute of the `torch._VF` module's own shadows that lookup.
    variable_functions = getattr(torch._C, "_VariableFunctions", None)
    vf_module = sys.modules.get("torch._VF")
    if variable_functions is not None and vf_module is not None:
        for key, (_, original) in functions.items():
            attr = getattr(original, "__name__", "")
            if attr and getattr(variable_functions, attr, None) is original:
                setattr(vf_module, attr, guards[key])
