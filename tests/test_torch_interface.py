"""descend.torch's constructors: torch's signatures and defaults, conventions, extra flags, bad input, describe()."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import descend  # noqa: E402
import descend.torch as dt  # noqa: E402
from descend.algorithms import CONVENTIONS  # noqa: E402
from descend.torch._options import group_backend  # noqa: E402
from tests.shapes import shape_for, torch_grad  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

# The classes with a counterpart in the installed torch (torch.optim.Muon arrived in torch 2.9).
SHARED = [
    name for name, cls in dt.OPTIMIZERS.items() if cls.spec.torch_name and hasattr(torch.optim, cls.spec.torch_name)
]


def twin(name: str) -> type:
    return getattr(torch.optim, dt.OPTIMIZERS[name].spec.torch_name)


def param(n: int = 4, dtype: torch.dtype = torch.float32) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.linspace(-1.0, 1.0, n, dtype=dtype))


@pytest.mark.parametrize("name", SHARED)
def test_signature_is_torchs_then_descends_extras(name: str) -> None:
    ours = list(inspect.signature(dt.OPTIMIZERS[name]).parameters.values())
    theirs = list(inspect.signature(twin(name).__init__).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [(p.name, p.kind, p.default) for p in theirs]
    extras = ours[len(theirs) :]
    # a closure-driven class (LBFGS) runs outside the engine: it has no backends, NaN policy or state dtype to choose
    tail = ["convention", "backend", "nan_policy", "state_dtype"]
    if not dt.OPTIMIZERS[name].spec.elementwise:
        tail = ["convention"]
    assert [p.name for p in extras][-len(tail) :] == tail
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in extras)
    spec_extras = [n for n in dt.OPTIMIZERS[name].spec.hyperparams.names() if n not in {p.name for p in theirs}]
    assert [p.name for p in extras[: -len(tail)]] == spec_extras


@pytest.mark.parametrize("name", SHARED)
def test_defaults_match_torch(name: str) -> None:
    p = param().reshape(shape_for(name, (4,))).detach()
    ours, theirs = dt.OPTIMIZERS[name]([p.clone()]), twin(name)([p.clone()])
    for key, value in theirs.defaults.items():
        assert ours.defaults[key] == value, f"{name}: default {key}={ours.defaults[key]!r}, torch has {value!r}"


def test_positional_arguments_land_where_torch_puts_them() -> None:
    ours = dt.Adam([param()], 0.1, (0.8, 0.9), 1e-6, 0.01, True)
    theirs = torch.optim.Adam([param()], 0.1, (0.8, 0.9), 1e-6, 0.01, True)
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad"):
        assert ours.defaults[key] == theirs.defaults[key]
    rms = dt.RMSprop([param()], 0.1, 0.9, 1e-6, 0.0, 0.5, True, False, None, True)  # torch's RMSprop has no '*'
    assert rms.defaults["maximize"] is True and rms.defaults["momentum"] == 0.5
    with pytest.raises(TypeError):
        dt.Adam([param()], 0.1, (0.8, 0.9), 1e-6, 0.01, True, False)  # maximize is keyword-only, as in torch
    with pytest.raises(TypeError):
        dt.Adam([param()], eps_hat=True, gamma=0.5)  # an argument nobody knows


BAD = [
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"momentum": -0.5}, "momentum"),
    ("sgd", {"weight_decay": -1.0}, "weight_decay"),
    ("sgd", {"nesterov": True}, "momentum"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening"),
    ("rmsprop", {"eps": -1.0}, "eps"),
    ("rmsprop", {"momentum": -0.1}, "momentum"),
    ("rmsprop", {"alpha": -0.1}, "alpha"),
    ("adagrad", {"lr_decay": -1.0}, "lr_decay"),
    ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    ("adadelta", {"rho": 1.5}, "rho"),
    ("adam", {"betas": (1.0, 0.999)}, "beta"),
    ("adam", {"betas": (0.9, -0.1)}, "beta"),
    ("adam", {"lr": torch.tensor([0.1, 0.2])}, "lr"),
    ("adamw", {"weight_decay": -0.1}, "weight_decay"),
    ("adamax", {"eps": -1e-8}, "eps"),
    ("nadam", {"momentum_decay": -0.1}, "momentum_decay"),
    ("radam", {"betas": (0.9, 1.5)}, "beta"),
]


@pytest.mark.parametrize(("name", "kwargs", "word"), BAD, ids=[f"{n}-{w}-{i}" for i, (n, _, w) in enumerate(BAD)])
def test_rejects_what_torch_rejects(name: str, kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError):
        twin(name)([param()], **kwargs)
    with pytest.raises(ValueError, match=word) as info:
        dt.OPTIMIZERS[name]([param()], **kwargs)
    value = next(iter(kwargs.values())) if len(kwargs) == 1 else None
    if isinstance(value, float):
        assert str(value) in str(info.value), "the message names the bad value"


def test_rejects_bad_params_as_torch_does() -> None:
    with pytest.raises(TypeError, match="iterable of Tensors"):
        dt.Adam(param())
    with pytest.raises(ValueError, match="empty parameter list"):
        dt.Adam([])
    with pytest.raises(ValueError, match="non-leaf"):
        dt.Adam([param() * 2])


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"capturable": True}, "capturable=True"),
        ({"backend": "gpu"}, "backend"),
        ({"convention": "jax"}, "convention"),
        ({"amsgrad": True, "amsgrad_max": "corrected", "eps_hat": True}, "eps_hat"),
        ({"amsgrad_max": "max"}, "amsgrad_max"),
    ],
)
def test_rejects_what_descend_cannot_honour(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        dt.Adam([param()], **kwargs)


@pytest.mark.parametrize("kwargs", [{"fused": True, "foreach": True}, {"fused": True, "differentiable": True}])
def test_fused_contradictions_are_runtime_errors_as_in_torch(kwargs: dict) -> None:
    with pytest.raises(RuntimeError, match="`fused`") as info:
        dt.Adam([param()], **kwargs)
    assert all(f"{k}" in str(info.value) for k in kwargs)


def test_foreach_and_fused_choose_a_backend() -> None:
    assert group_backend("auto", {"foreach": None, "fused": None}) == "auto"
    assert group_backend("auto", {"foreach": True}) == "auto"
    assert group_backend("auto", {"foreach": False}) == "reference"
    assert group_backend("reference", {"foreach": False}) == "reference"
    with pytest.raises(ValueError, match="foreach=False"):
        group_backend("fused", {"foreach": False})
    with pytest.raises(ValueError, match="fused"):
        group_backend("reference", {"fused": True})
    w = param()
    opt = dt.SGD([w], lr=0.1, foreach=True)
    assert opt.defaults["foreach"] is True
    w.grad = torch.ones_like(w)
    opt.step()
    assert_close(w, torch.linspace(-1.0, 1.0, 4) - 0.1, torch_tolerance(torch.float32))


def test_convention_presets_and_explicit_arguments() -> None:
    keras = dt.Adam([param()], convention="keras")
    assert keras.defaults["eps"] == 1e-7 and keras.defaults["eps_hat"] is True
    override = dt.Adam([param()], eps=1e-3, convention="keras")
    assert override.defaults["eps"] == 1e-3 and override.defaults["eps_hat"] is True
    optax = dt.RMSprop([param()], convention="optax")
    assert optax.defaults["eps"] == 0.0 and optax.defaults["eps_root"] == 1e-8 and optax.defaults["alpha"] == 0.9
    assert dt.Adam([param()], 1e-3, convention="article").defaults["lr"] == 1e-3  # positional counts as explicit


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", list(dt.OPTIMIZERS))
def test_same_path_as_the_numpy_front(name: str, convention: str) -> None:
    """Every algorithm under every convention (the extra flags included) follows descend's NumPy front.

    Host scalars (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) are kept, as torch keeps them, in tensors of
    torch's default dtype: under a float64 default they are float64, as in the NumPy front.
    """
    spec = descend.REGISTRY[name]
    if spec.elementwise and spec.host_slots(spec.make()):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            _follow_numpy_front(name, convention)
        finally:
            torch.set_default_dtype(previous)
    else:
        _follow_numpy_front(name, convention)


def _follow_numpy_front(name: str, convention: str) -> None:
    if not descend.REGISTRY[name].elementwise:
        _follow_numpy_front_with_closures(name, convention)
        return
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape_for(name, (6,)))
    t = torch.nn.Parameter(torch.from_numpy(w.copy()))
    extra = {"amsgrad": True} if name in ("adam", "adamw") else {}
    ours = dt.OPTIMIZERS[name]([t], convention=convention, **extra)
    reference = descend.OPTIMIZERS[name]([w], convention=convention, **extra)
    for _ in range(15):
        g = rng.standard_normal(w.shape) + 0.5 * w
        reference.step([g])
        t.grad = torch_grad(type(ours), torch.from_numpy(g.copy()))
        ours.step()
    assert_close(t, w, torch_tolerance(torch.float64))


def _follow_numpy_front_with_closures(name: str, convention: str) -> None:
    """A closure-driven algorithm, both fronts on the same quadratic, each evaluating its own closure."""
    rng = np.random.default_rng(3)
    w, scale, centre = rng.standard_normal(6), rng.uniform(0.5, 2.0, 6), rng.standard_normal(6)
    t = torch.nn.Parameter(torch.from_numpy(w.copy()))
    ours = dt.OPTIMIZERS[name]([t], convention=convention, max_iter=3)
    reference = descend.OPTIMIZERS[name]([w], convention=convention, max_iter=3)

    def torch_closure() -> torch.Tensor:
        t.grad = None
        loss = 0.5 * (torch.from_numpy(scale) * (t - torch.from_numpy(centre)) ** 2).sum()
        loss.backward()
        return loss

    def numpy_closure() -> tuple[float, list[np.ndarray]]:
        return float(0.5 * np.sum(scale * (w - centre) ** 2)), [scale * (w - centre)]

    for _ in range(4):
        reference.step(numpy_closure)
        ours.step(torch_closure)
    assert reference.state[0]["n_iter"] > 6
    assert_close(t, w, torch_tolerance(torch.float64))


def test_momentum_has_its_own_signature_and_runs() -> None:
    names = list(inspect.signature(dt.Momentum).parameters)
    assert names == [
        "params",
        "lr",
        "beta",
        "nesterov",
        "weight_decay",
        "maximize",
        "convention",
        "backend",
        "nan_policy",
        "state_dtype",
    ]
    w = param()
    opt = dt.Momentum([w], lr=0.5, beta=0.9)
    w.grad = torch.ones_like(w)
    opt.step()
    # V_1 = (1 - beta) * g, so the first step is lr * 0.1.
    assert_close(w, torch.linspace(-1.0, 1.0, 4) - 0.05, torch_tolerance(torch.float32))
    assert list(opt.state[w]) == ["step", "exp_avg"]


def test_describe_shows_the_rule_in_force() -> None:
    a, b = param(), param()
    opt = dt.Adam([{"params": [a]}, {"params": [b], "amsgrad": True, "lr": 0.05}], lr=0.01, weight_decay=0.1)
    text = opt.describe()
    assert "param group 0" in text and "param group 1" in text
    first, second = text.split("param group 1")
    assert "AMSGrad" not in first and "AMSGrad" in second
    assert "0.05" in second and "L2 weight decay" in first
    assert dt.AdamW([a]).describe().startswith("AdamW")
    assert "epsilon hat" in dt.Adam([a], convention="keras").describe()


def test_a_torch_with_an_extra_argument_still_imports() -> None:
    """The signatures are descend's own (a test above holds them to torch's): a torch release that gives
    torch.optim.Adam a new keyword changes nothing at import, and the class still builds and steps."""
    import subprocess
    import sys

    script = (
        "import torch\n"
        "class Adam(torch.optim.Adam):\n"
        "    def __init__(self, params, lr=1e-3, *, new_knob=False, **kwargs):\n"
        "        super().__init__(params, lr=lr, **kwargs)\n"
        "torch.optim.Adam = Adam\n"
        "import descend.torch as dt\n"
        "w = torch.nn.Parameter(torch.ones(3))\n"
        "opt = dt.Adam([w], lr=0.5)\n"
        "w.grad = torch.ones(3)\n"
        "opt.step()\n"
        "v = torch.nn.Parameter(torch.ones(3))\n"
        "theirs = torch.optim.Adam([v], lr=0.5, new_knob=True)\n"
        "v.grad = torch.ones(3)\n"
        "theirs.step()\n"
        "print(torch.equal(w, v))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("name", list(dt.OPTIMIZERS))
def test_every_class_is_reachable_by_its_title_and_torchs_are_written_out(name: str) -> None:
    """Each registry algorithm is a class of both fronts under its title; those with a torch.optim counterpart are
    class statements a reader can find."""
    for module in (dt, descend):
        cls = getattr(module, dt.OPTIMIZERS[name].spec.title)
        assert cls is module.OPTIMIZERS[name] and cls.spec is descend.REGISTRY[name]
        if cls.spec.torch_name:
            base = "Optimizer" if cls.spec.elementwise else "ClosureOptimizer"
            assert inspect.getsource(cls).startswith(f"class {cls.__name__}({base}):")


@pytest.mark.parametrize(
    "module", ["descend.engine.plan", "descend.engine.torch_arrays", "descend.engine.tensorlist", "descend.torch"]
)
def test_each_torch_module_imports_first(module: str) -> None:
    """The engine's torch modules import on their own, first in a fresh process (the engine no longer reaches up
    into the torch front, whose package imports the engine)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
