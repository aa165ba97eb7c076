"""The untrusted side of the worker: imports student modules and answers calls.

Started by `submission.Submission` as `python -I -u _child.py CONFIG_JSON`. Before torch or any
student code is imported it confines itself (`_sandbox.py`, loaded by path: namespaces, a
read-only view with the repository hidden, a uid of its own, limits), then puts the copy of the
student tree alone on `sys.path`. Its stdout and stderr are pipes the grader drains and caps.
This file imports only the standard library, `_sandbox.py` and torch: it never sees the graders,
the reference solutions or the hidden tests.

Protocol: frames on two private file descriptors (never stdout, so a student's `print` cannot
forge a reply). A frame is an 8-byte big-endian length followed by a `torch.save` payload.
The grader sends requests; the child answers each with one reply made only of plain data
(tensors, numbers, strings, lists, tuples, dicts), which the grader decodes with
`torch.load(weights_only=True)` and checks.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import traceback
import types

# A frame: its payload's length and the id of the request it belongs to (0: the boot and
# import reports), then the payload. The id travels in the header so the grader can refuse an
# answer to the wrong request before it reads, let alone decodes, a byte of it.
HEADER = struct.Struct(">QQ")


def write_frame(fd: int, payload: bytes, ident: int = 0) -> None:
    data = HEADER.pack(len(payload), ident) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int) -> tuple[int, bytes]:
    """(id, payload) of the next frame on `fd` (the child reads the grader's requests so)."""
    size, ident = HEADER.unpack(read_exact(fd, HEADER.size))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {max_bytes}")
    return ident, read_exact(fd, size)


# --- everything below runs only in the child process ------------------------------------


def _load_sandbox():
    """`_sandbox.py` beside this file, loaded by path (`-I` keeps this folder off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_graders_sandbox", os.path.join(os.path.dirname(__file__),
                                                                                   "_sandbox.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_bans():
    """`_bans.py` beside this file, loaded by path like `_sandbox.py` (before the confinement,
    which may hide this folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_graders_bans", os.path.join(os.path.dirname(__file__), "_bans.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _encode(obj, torch):
    """Student outputs -> plain data. Anything else becomes an `$unsupported` marker."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu" or obj.layout != torch.strided:
            # The inputs were dense CPU tensors; the grader reads nothing else.
            return {"$unsupported": f"tensor on device {obj.device.type} with layout {obj.layout}"}
        return obj.detach().clone().as_subclass(torch.Tensor).contiguous()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return tuple(_encode(x, torch) for x in obj)
    if isinstance(obj, list):
        return [_encode(x, torch) for x in obj]
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {k: _encode(v, torch) for k, v in obj.items()}
    return {"$unsupported": type(obj).__module__ + "." + type(obj).__qualname__}


# --- trusted helpers a request may call in the worker (module "$harness") ----------------
# Chapter 06 tests need objects the narrow call layer cannot otherwise make: parameters that
# carry a gradient, a small torch.nn language model, a batch source for a trainer. They are
# plain torch code; the grader imports the same functions to compute the expected values.


def harness_parameter(data, grad=None):
    """An nn.Parameter holding a copy of `data`, with `.grad` a copy of `grad` (or None)."""
    import torch

    param = torch.nn.Parameter(data.detach().clone())
    param.grad = None if grad is None else grad.detach().clone()
    return param


def harness_set_grads(params, grads) -> None:
    """Give each parameter a copy of its gradient (None: no gradient)."""
    for param, grad in zip(params, grads):
        param.grad = None if grad is None else grad.detach().clone()


def harness_set_group(optimizer, index: int, values: dict) -> None:
    """Change param group `index`'s hyperparameters (a scheduler's `lr`, say)."""
    optimizer.param_groups[index].update(values)


def harness_optimizer_state(optimizer) -> dict:
    """`optimizer.state_dict()` as plain data (the grader reads only string keys)."""
    state = optimizer.state_dict()
    return {"state": {str(k): dict(v) for k, v in state["state"].items()},
            "param_groups": [dict(group) for group in state["param_groups"]]}


def harness_load_optimizer_state(optimizer, state: dict) -> None:
    """The inverse of `harness_optimizer_state`: load it with `optimizer.load_state_dict`."""
    optimizer.load_state_dict({"state": {int(k): v for k, v in state["state"].items()},
                               "param_groups": state["param_groups"]})


def harness_tiny_lm(vocab_size: int, d_model: int, state_dict=None, dropout: float = 0.0, double: bool = False):
    """A tiny language model from torch.nn: embedding, dropout, a tanh layer, output logits
    (float64 weights with `double`, loaded after the conversion so nothing rounds)."""
    import torch
    from torch import nn

    torch.manual_seed(0)  # the default initialisation, when no state_dict is given
    model = nn.Sequential(nn.Embedding(vocab_size, d_model), nn.Dropout(dropout), nn.Linear(d_model, d_model),
                          nn.Tanh(), nn.Linear(d_model, vocab_size))
    if double:
        model.double()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model.matmul_dtype = ""  # the dtype the hidden layer last computed in (autocast shows here)
    model[2].register_forward_hook(lambda layer, inputs, out: setattr(model, "matmul_dtype", str(out.dtype)))
    return model


def harness_loss():
    """PyTorch's cross-entropy over (..., V) logits (half precision in float32): a trusted
    `loss_fn` for train_step tests, so they do not depend on the student's own cross_entropy."""
    import torch
    import torch.nn.functional as F

    def loss_fn(logits, targets):
        flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        return F.cross_entropy(flat, targets.reshape(-1))

    return loss_fn


def harness_grad_scaler(init_scale: float):
    """A GradScaler on the CPU (the tests have no GPU): it scales and unscales float32 gradients alike."""
    import torch

    return torch.amp.GradScaler("cpu", init_scale=init_scale)


def harness_parameters(module) -> list:
    return list(module.parameters())


def harness_sgd(params, lr: float):
    """A trusted optimizer, for tests of a training step that must not depend on the student's AdamW."""
    import torch

    return torch.optim.SGD(params, lr=lr)


def harness_batch_source(vocab_size: int, batch_size: int, seq_len: int):
    """`get_batch(split, generator) -> (inputs, targets)`: random tokens whose next token is
    (token + 1) mod V, a pattern a tiny model learns in a few steps; all randomness from `generator`."""
    import torch

    def get_batch(split: str, generator):  # both splits follow the same rule
        inputs = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)  # (B, T)
        return inputs, (inputs + 1) % vocab_size

    return get_batch


def harness_sum(tensor):
    """`tensor.sum()`: a scalar to call backward on."""
    return tensor.sum()


def harness_grads(params) -> list:
    """The `.grad` of each parameter (None where it has none)."""
    return [p.grad for p in params]


def harness_tied_embedding(vocab_size: int, d_model: int):
    """An embedding and an output layer sharing one weight (V x D): one tensor, two names."""
    from torch import nn

    model = nn.ModuleDict({"embedding": nn.Embedding(vocab_size, d_model),
                           "output": nn.Linear(d_model, vocab_size, bias=False)})
    model["output"].weight = model["embedding"].weight
    return model


def harness_watch(module, names: list) -> dict:
    """Forward hooks on the submodules `names` of `module` (dotted paths, e.g.
    `encoder_layers.0.norm1`): every call appends {"args": tensors passed positionally,
    "kwargs": tensors passed by name, "output": what it returned} to the returned dict's
    list for that name. Chapter 01 reads where a norm sits and what cross-attention reads."""
    record: dict = {name: [] for name in names}

    def tensors(value):
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, (tuple, list)):
            return [tensors(v) for v in value]
        return None  # flags, masks of other types: not recorded

    for name in names:
        def hook(_module, args, kwargs, output, name=name):
            record[name].append({"args": tensors(list(args)), "output": tensors(output),
                                 "kwargs": {k: tensors(v) for k, v in kwargs.items()}})

        module.get_submodule(name).register_forward_hook(hook, with_kwargs=True)
    return record


def harness_generator(seed: int):
    """A CPU `torch.Generator` seeded with `seed` (sampling tests replay the same stream)."""
    import torch

    return torch.Generator().manual_seed(seed)


def harness_files(folder: str) -> list:
    """The names in `folder` (relative to the worker's scratch directory), sorted; [] if absent."""
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


HARNESS = {name[len("harness_"):]: fn for name, fn in dict(globals()).items() if name.startswith("harness_")}


def _select(obj, path):
    for index in path:
        obj = obj[index]
    return obj


class _Session:
    """Objects built by one request, addressed by name (`self` is the built module)."""

    def __init__(self, modules: dict, torch, import_errors: dict | None = None) -> None:
        self.modules = modules
        self.import_errors = import_errors or {}  # module name -> why it did not import
        self.torch = torch
        self.objects: dict = {}

    def resolve(self, target: str, module_name: str | None = None):
        """`softmax` (a module-level name) or `name.attr` (an attribute of a built object);
        module-level names come from `module_name`, by default the request's module."""
        head, _, rest = target.partition(".")
        if head in self.objects:
            obj = self.objects[head]
        else:
            module_name = module_name or self.current_module
            module = self.modules.get(module_name)
            if module is None:
                raise ImportError(f"{module_name}.py did not import: {self.import_errors.get(module_name, 'not found')}")
            if not hasattr(module, head):
                raise AttributeError(f"{module_name}.py has no `{head}`")
            obj = getattr(module, head)
        for part in rest.split(".") if rest else ():
            obj = getattr(obj, part)
        return obj

    def value(self, arg):
        """Replace `{"$obj": name}` references with the named objects."""
        if isinstance(arg, dict) and set(arg) == {"$obj"}:
            return self.objects[arg["$obj"]]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self.value(v) for k, v in arg.items()}
        return arg

    def run(self, request: dict) -> dict:
        torch = self.torch
        self.current_module = request["module"]
        if request.get("seed") is not None:
            torch.manual_seed(request["seed"])
        for name, spec in request.get("objects", {}).items():
            self.objects[name] = self.resolve(spec["cls"], spec.get("module"))(**self.value(spec.get("init", {})))
        build = request.get("build")
        if build is not None:
            module = self.resolve(build["cls"], build.get("module"))(**self.value(build.get("init", {})))
            if build.get("double"):
                module.double()  # before loading, so float64 weights are not rounded through float32
            if build.get("state_dict") is not None:
                _load_state(module, build["state_dict"], build.get("init", {}))
            module.train(bool(build.get("train", False)))
            self.objects["self"] = module
        grad = request.get("grad")
        outputs, grads = [], {}
        for index, call in enumerate(request.get("calls", [])):
            args = list(self.value(call.get("args", [])))
            kwargs = dict(self.value(call.get("kwargs", {})))
            wants_grad = grad is not None and grad["call"] == index
            if wants_grad:
                for key in grad.get("wrt", []):
                    holder, slot = (args, key) if isinstance(key, int) else (kwargs, key)
                    holder[slot] = holder[slot].detach().clone().requires_grad_(True)
            result = self.resolve(call["fn"], call.get("module"))(*args, **kwargs)
            if wants_grad:
                output = _select(result, grad.get("output", []))
                if not isinstance(output, torch.Tensor):
                    raise TypeError(f"expected a Tensor to differentiate, got {type(output).__name__}")
                wrt = [(key, args[key] if isinstance(key, int) else kwargs[key]) for key in grad.get("wrt", [])]
                module = self.objects.get("self")
                params = list(module.named_parameters()) if module is not None else []
                leaves = [t for _, t in wrt] + [p for _, p in params]
                found = torch.autograd.grad(output, leaves, grad_outputs=grad["upstream"], allow_unused=True)
                grads = {"inputs": {str(key): g for (key, _), g in zip(wrt, found[: len(wrt)])},
                         "params": {name: g for (name, _), g in zip(params, found[len(wrt):])}}
            if call.get("store"):  # kept for later calls and attrs (a trainer `train` returned)
                self.objects[call["store"]] = result
            # A call made for its effect (`self.eval`, which returns the module) answers None.
            outputs.append(None if call.get("discard") or call.get("store") else result)
        attrs = {name: self.resolve(name) for name in request.get("attrs", [])}
        reply = {"ok": True, "outputs": outputs, "grads": grads, "attrs": attrs}
        if request.get("state_dict_shapes"):
            reply["state_dict_shapes"] = {k: list(v.shape) for k, v in self.objects["self"].state_dict().items()}
        if request.get("parameter_shapes"):  # each tensor once, by its first name (a tied weight once)
            reply["parameter_shapes"] = {k: list(v.shape) for k, v in self.objects["self"].named_parameters()}
        return reply


def _load_state(module, state: dict, init: dict | None = None) -> None:
    """`module.load_state_dict(state)`, strict but for two ways a correct module may differ:
    a buffer `state` leaves out keeps its own value (a position table registered persistent
    or not), and a parameter reached under a second name (a tied output layer) needs no entry
    of its own when another of its names is given. A failure names its cause: which tensors of
    the student's module (built with `init`) have other shapes than the test's, or which keys
    are missing or unexpected."""
    own = module.state_dict()
    mismatched = [(key, tuple(own[key].shape), tuple(value.shape)) for key, value in state.items()
                  if key in own and hasattr(value, "shape") and tuple(own[key].shape) != tuple(value.shape)]
    if mismatched:
        raise RuntimeError(_size_mismatch(module, mismatched, init or {}))
    result = module.load_state_dict(state, strict=False)
    buffers = {name for name, _ in module.named_buffers()}
    names_of: dict[int, set] = {}
    every = dict(module.named_parameters(remove_duplicate=False))
    for name, parameter in every.items():
        names_of.setdefault(id(parameter), set()).add(name)
    missing = [key for key in result.missing_keys
               if key not in buffers and not (key in every and names_of[id(every[key])] & set(state))]
    problems = []
    if result.unexpected_keys:
        problems.append("your module has no " + ", ".join(repr(k) for k in result.unexpected_keys)
                        + " (the test loads them)")
    if missing:
        problems.append("the test loads no " + ", ".join(repr(k) for k in missing) + " (your module has them)")
    if problems:
        raise RuntimeError(f"the parameter names of your {type(module).__name__} differ from the contract's: "
                           + "; ".join(problems) + " (the class docstring names every parameter)")


SHAPES_SHOWN = 4  # mismatched tensors named in one message; the rest are counted


def _size_mismatch(module, mismatched: list[tuple[str, tuple, tuple]], init: dict) -> str:
    """"your SwiGLU(d_model=8) has w1.weight of shape (16, 8); the test loads (10, 8): ...": the
    student's shapes against the test's, for the constructor arguments the test passed."""
    args = ", ".join(f"{k}={v!r}" for k, v in init.items() if isinstance(v, (bool, int, float, str, type(None))))
    shown = mismatched[:SHAPES_SHOWN]
    more = f" (and {len(mismatched) - SHAPES_SHOWN} more)" if len(mismatched) > SHAPES_SHOWN else ""
    return (f"your {type(module).__name__}({args}) has "
            + ", ".join(f"{key} of shape {own}" for key, own, _ in shown) + more
            + "; the test loads " + ", ".join(str(theirs) for _, _, theirs in shown)
            + ": the module's sizes differ from the handout's for these arguments (its default widths?)")


def _failure(exc: BaseException, student_dir: str, shown_dir: str = "") -> dict:
    """Describe a student exception as data, with the traceback cut to the student's frames
    (named by the student's own path, not the copy the worker imported)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(student_dir)]
    where = "".join(traceback.format_list(frames[-6:]))
    if shown_dir:
        where = where.replace(student_dir, shown_dir)
    kind = "exception"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "not enough memory" in str(exc):
        kind = "memory"
    elif isinstance(exc, SystemExit):
        kind = "exit"
    return {
        "ok": False,
        "kind": kind,
        "type": type(exc).__name__[:200],  # a student's class name can be megabytes; the grader cuts again
        "mro": [c.__name__[:200] for c in type(exc).__mro__[:64]],
        "message": str(exc)[:2000],
        "traceback": where[-4000:],
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    request_fd, reply_fd = config["request_fd"], config["reply_fd"]
    sandbox = _load_sandbox()
    bans = _load_bans()
    confined = sandbox.confine(config)  # may fork: only the confined worker returns
    sandbox.set_limits(config.get("limits", {}), confined)
    import torch  # after the limits, so a blow-up during import is bounded too

    torch.set_num_threads(1)  # the grader runs beside us on a small machine
    student_dir, shown_dir = config["student_dir"], config.get("student_shown", "")
    # Before the student's folder joins sys.path: code from the folders on it now counts as a
    # library's, which may use a banned API on its own account.
    guard = bans.install(torch, config.get("banned", []),
                         {os.path.join(student_dir, f"{name}.py"): name for name in config["modules"]},
                         grader_file=__file__, helpers=HARNESS.values(),
                         uses_files=[os.path.join(student_dir, f"{name}.py") for name in config.get("uses", [])])
    sandbox.install_guards(config["sandbox"], confined["mode"])
    me = os.getpid()
    write_frame(reply_fd, _save({"ok": True, "phase": "booted", "sandbox": confined}, torch))

    sys.path.insert(0, student_dir)
    modules, imports = {}, {}
    for name in config["modules"] + config.get("uses", []):
        try:
            modules[name] = __import__(name)
            imports[name] = None
        except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, anything
            imports[name] = _failure(exc, student_dir, shown_dir) | _syntax_detail(exc)
        banned = guard.take()  # a banned call at import counts even where the module caught it
        if banned is not None:
            modules.pop(name, None)
            imports[name] = _failure(banned, student_dir, shown_dir) | {"kind": "banned"}
    # Requests may also build plain torch.nn modules by name (a Linear sublayer for a residual
    # block) and call the harness helpers above, never anything else outside the student's tree.
    modules.setdefault("torch.nn", torch.nn)
    modules.setdefault("$harness", types.SimpleNamespace(**HARNESS))
    _only(me)
    write_frame(reply_fd, _save({"ok": True, "phase": "imported", "imports": imports}, torch))

    while True:
        try:
            ident, frame = read_frame(request_fd, 1 << 34)
            request = torch.load(io.BytesIO(frame), weights_only=True)
        except EOFError:
            return
        try:
            reply = _Session(modules, torch, _import_errors(imports)).run(request)
            payload = _save(reply | {"id": request.get("id")}, torch)
        except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
            payload = _save(_failure(exc, student_dir, shown_dir) | {"id": request.get("id")}, torch)
        banned = guard.take()  # the request fails even where the student's code caught the error
        if banned is not None:
            payload = _save(_failure(banned, student_dir, shown_dir) | {"kind": "banned", "id": request.get("id")},
                            torch)
        _only(me)
        write_frame(reply_fd, payload, ident)


def _only(me: int) -> None:
    """A process the student's code forked (through ctypes, say) ends here, before it could
    answer on the grader's pipe in the worker's place."""
    if os.getpid() != me:
        os._exit(0)


def _import_errors(imports: dict) -> dict:
    """Module name -> one line on why it did not import (for requests that still name it)."""
    return {name: f"{info['type']}: {info['message']}" + (f" (line {info['line']})" if info.get("line") else "")
            for name, info in imports.items() if info is not None}


def _syntax_detail(exc: BaseException) -> dict:
    if isinstance(exc, SyntaxError):
        return {"line": exc.lineno or 0, "text": (exc.text or "").rstrip()[:200]}
    return {}


def _save(obj, torch) -> bytes:
    buffer = io.BytesIO()
    torch.save(_encode(obj, torch), buffer)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
