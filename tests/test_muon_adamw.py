"""MuonWithAdamW: the rule that routes parameters, the group keys, one step and one state_dict for both algorithms,
schedulers, checkpoints, and agreement with Muon and AdamW run side by side."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import descend  # noqa: E402
import descend.torch as dt  # noqa: E402
from descend.muon_adamw import is_embedding_name, is_head_name, routes_to_muon  # noqa: E402
from tests.bad_input_helpers import assert_unchanged, snapshot  # noqa: E402
from tests.tolerances import TORCH_FLOAT32, assert_close, torch_muon_tolerance  # noqa: E402

VOCAB, WIDTH, CONTEXT = 40, 16, 6


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(WIDTH)
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = torch.nn.Linear(WIDTH, WIDTH)
        self.ln_2 = torch.nn.LayerNorm(WIDTH)
        self.fc = torch.nn.Linear(WIDTH, 4 * WIDTH)
        self.out = torch.nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln_1(x)).chunk(3, dim=-1)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        att = (q @ k.transpose(-1, -2) / WIDTH**0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.proj(att @ v)
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln_2(x))))


class TinyLM(torch.nn.Module):
    """A GPT-like model: token table (named ``tok``: only its type says it is an embedding), learned positions, two
    blocks, a final norm and an untied head."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, WIDTH)
        self.pos_embed = torch.nn.Parameter(torch.randn(CONTEXT, WIDTH) * 0.02)
        self.blocks = torch.nn.ModuleList([Block(), Block()])
        self.ln_f = torch.nn.LayerNorm(WIDTH)
        self.lm_head = torch.nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos_embed[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


HIDDEN = [f"blocks.{i}.{m}.weight" for i in range(2) for m in ("qkv", "proj", "fc", "out")]


def _model(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM()


def _data(step: int) -> torch.Tensor:
    """Sequences that follow x -> 3x + 1 (mod VOCAB) from a random start: a rule the model can learn."""
    start = torch.randint(0, VOCAB, (8, 1), generator=torch.Generator().manual_seed(step))
    steps = [start]
    for _ in range(CONTEXT):
        steps.append((3 * steps[-1] + 1) % VOCAB)
    return torch.cat(steps, dim=1)


def _synthetic_step(models: list[TinyLM], opts: list, step: int) -> None:
    """Gradients ``0.5 p + noise`` per parameter: each parameter's path depends on itself alone, so that Muon's
    bfloat16 flips do not reach the AdamW part through the loss."""
    for model in models:
        for k, p in enumerate(model.parameters()):
            noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(1000 * step + k))
            p.grad = 0.5 * p.detach() + noise
    for opt in opts:
        opt.step()


def _train(model: TinyLM, opts: list, steps: int, start: int = 0, scheduler: object = None) -> list[float]:
    losses = []
    for t in range(start, start + steps):
        batch = _data(t)
        loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        for opt in opts:
            opt.zero_grad()
        loss.backward()
        for opt in opts:
            opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


# -- the rule ---------------------------------------------------------------------------------------------------------


def test_the_rule_on_a_small_transformer() -> None:
    """Hidden matrices to Muon; the embedding (known by its module's type), the positions (by name), the head (by
    name), the norms and the biases to AdamW."""
    opt = dt.MuonWithAdamW(_model(), lr=0.02)
    routes = {name: algorithm for name, _, algorithm in opt.routes()}
    assert {n for n, a in routes.items() if a == "Muon"} == set(HIDDEN)
    assert routes["tok.weight"] == routes["pos_embed"] == routes["lm_head.weight"] == "AdamW"
    assert all(routes[n] == "AdamW" for n in routes if n.endswith(".bias") or "ln" in n)
    assert [g["use_muon"] for g in opt.param_groups] == [True, False]
    assert opt.param_groups[0]["param_names"] == HIDDEN
    # by names alone, the embedding called "tok" is a matrix like any other: the model's types are what tell it
    named = dt.MuonWithAdamW(_model().named_parameters())
    assert dict((n, a) for n, _, a in named.routes())["tok.weight"] == "Muon"
    unnamed = dt.MuonWithAdamW(_model().parameters())
    assert sum(a == "Muon" for _, _, a in unnamed.routes()) == len(HIDDEN) + 3  # tok, pos_embed and lm_head too


@pytest.mark.parametrize(
    ("name", "ndim", "muon"),
    [
        ("transformer.h.0.attn.c_attn.weight", 2, True),
        ("transformer.wte.weight", 2, False),
        ("transformer.wpe.weight", 2, False),
        ("model.embed_tokens.weight", 2, False),
        ("bert.embeddings.word_embeddings.weight", 2, False),
        ("lm_head.weight", 2, False),
        ("classifier.weight", 2, False),
        ("output.weight", 2, False),
        ("bert.encoder.layer.0.attention.output.dense.weight", 2, True),
        ("heads.weight", 2, True),
        ("transformer.h.0.attn.c_attn.bias", 1, False),
        ("conv.weight", 4, False),
    ],
)
def test_the_rule_by_name(name: str, ndim: int, muon: bool) -> None:
    assert routes_to_muon(ndim, name) is muon
    assert routes_to_muon(ndim, None) is (ndim == 2)
    assert is_embedding_name(name) or is_head_name(name) or ndim != 2 or muon


def test_a_group_overrides_the_rule_with_use_muon() -> None:
    model = _model()
    head = model.lm_head.weight
    others = [p for n, p in model.named_parameters() if n != "lm_head.weight"]
    opt = dt.MuonWithAdamW(
        [{"params": [head], "use_muon": True, "lr": 0.05}, {"params": others, "adamw_lr": 3e-4, "momentum": 0.9}],
        lr=0.02,
    )
    assert [(g["use_muon"], g["lr"]) for g in opt.param_groups] == [(True, 0.05), (True, 0.02), (False, 3e-4)]
    assert opt.param_groups[1]["momentum"] == 0.9 and "betas" in opt.param_groups[2]
    assert "momentum" not in opt.param_groups[2] and "betas" not in opt.param_groups[1]
    only_adamw = dt.MuonWithAdamW([{"params": [head], "use_muon": False, "betas": (0.8, 0.9)}])
    assert only_adamw.param_groups[0]["betas"] == (0.8, 0.9) and only_adamw.param_groups[0]["use_muon"] is False


@pytest.mark.parametrize(
    ("group", "error", "match"),
    [
        (
            {"use_muon": False, "momentum": 0.9},
            ValueError,
            r"use_muon=False takes AdamW's hyperparameters .*; got momentum",
        ),
        (
            {"use_muon": True, "adamw_lr": 0.1},
            ValueError,
            r"use_muon=True takes Muon's hyperparameters .*; got adamw_lr",
        ),
        ({"betas": (0.9, 0.99)}, ValueError, r"unknown key\(s\) betas in a param group without use_muon.*adamw_betas"),
        ({"use_muon": "yes"}, TypeError, r"use_muon must be True or False, got 'yes'"),
        ({"adamw_lr": -1.0}, ValueError, r"Invalid lr value: -1.0"),
        ({"momentum": -1.0}, ValueError, r"momentum should be >= 0 but is: -1.0"),
    ],
)
def test_bad_groups_are_refused_with_nothing_added(group: dict, error: type, match: str) -> None:
    model = _model()
    opt = dt.MuonWithAdamW([model.blocks[0].qkv.weight])
    with pytest.raises(error, match=match):
        opt.add_param_group({"params": [model.blocks[1].qkv.weight, model.blocks[1].qkv.bias], **group})
    assert len(opt.param_groups) == 1
    numpy_opt = descend.MuonWithAdamW([np.zeros((2, 2))])
    with pytest.raises(error, match=match):
        numpy_opt.add_param_group({"params": [np.zeros((3, 3)), np.zeros(3)], **group})
    assert len(numpy_opt.param_groups) == 1


def test_a_matrix_only_group_refuses_anything_else_as_muon_does() -> None:
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters.*torch.Size\(\[3\]\)"):
        dt.MuonWithAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "use_muon": True}])


# -- what it computes -------------------------------------------------------------------------------------------------


def test_it_is_descends_muon_and_adamw_side_by_side_bit_for_bit() -> None:
    both, hidden = _model(), _model()
    assert all(torch.equal(p, q) for p, q in zip(both.parameters(), hidden.parameters()))
    opt = dt.MuonWithAdamW(both, lr=0.02, weight_decay=0.05, adamw_lr=3e-3, adamw_betas=(0.9, 0.95))
    names = dict(hidden.named_parameters())
    muon = dt.Muon([names[n] for n in HIDDEN], lr=0.02, weight_decay=0.05)
    adamw = dt.AdamW([p for n, p in names.items() if n not in HIDDEN], lr=3e-3, betas=(0.9, 0.95))
    _train(both, [opt], 12)
    _train(hidden, [muon, adamw], 12)
    for (name, p), q in zip(both.named_parameters(), hidden.parameters()):
        assert torch.equal(p, q), name


def test_its_defaults_are_torchs_muon_and_adamw() -> None:
    """MuonWithAdamW(model) against torch.optim.Muon on the hidden matrices and torch.optim.AdamW on the rest, both
    with their defaults: the AdamW part within float32's tolerance, the Muon part within bfloat16 flips."""
    ours, theirs = _model(), _model()
    opt = dt.MuonWithAdamW(ours)
    names = dict(theirs.named_parameters())
    muon = torch.optim.Muon([names[n] for n in HIDDEN])
    adamw = torch.optim.AdamW([p for n, p in names.items() if n not in HIDDEN])
    steps = 15
    for t in range(steps):
        _synthetic_step([ours], [opt], t)
        _synthetic_step([theirs], [muon, adamw], t)
    for name, p in ours.named_parameters():
        q = names[name]
        tol = torch_muon_tolerance(steps, 1e-3 * 2.0) if name in HIDDEN else TORCH_FLOAT32
        assert_close(p, q, tol, name)


def test_it_trains_the_small_transformer() -> None:
    model = _model()
    losses = _train(model, [dt.MuonWithAdamW(model, lr=0.02, adamw_lr=3e-3)], 40)
    assert losses[-1] < 0.5 * losses[0]


def test_a_scheduler_sees_every_group() -> None:
    model = _model()
    opt = dt.MuonWithAdamW(model, lr=0.02, adamw_lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    _train(model, [opt], 3, scheduler=scheduler)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02 / 8, 3e-3 / 8])
    hidden = dict(model.named_parameters())[HIDDEN[0]]
    assert opt.state[hidden].keys() == {"momentum_buffer"}
    assert opt.state[model.tok.weight].keys() == {"step", "exp_avg", "exp_avg_sq"}


# -- one state_dict ---------------------------------------------------------------------------------------------------


def test_a_checkpoint_resumes_bit_for_bit() -> None:
    """Train 6 steps, save model and optimizer, train 6 more; a fresh model and optimizer loaded from the save and
    trained the same 6 steps end with the same bits."""
    model = _model()
    opt = dt.MuonWithAdamW(model, lr=0.02, adamw_lr=3e-3)
    _train(model, [opt], 6)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, [opt], 6, start=6)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = _model(seed=1)
    resumed.load_state_dict(saved["model"])
    again = dt.MuonWithAdamW(resumed, lr=0.02, adamw_lr=3e-3)
    again.load_state_dict(saved["opt"])
    _train(resumed, [again], 6, start=6)
    for (name, p), q in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    for p, q in zip(model.parameters(), resumed.parameters()):
        for key, value in opt.state[p].items():
            assert torch.equal(value, again.state[q][key])


def test_a_state_dict_of_other_groups_is_refused() -> None:
    model = _model()
    opt = dt.MuonWithAdamW(model)
    _train(model, [opt], 1)
    saved = opt.state_dict()
    swapped = copy.deepcopy(saved)
    swapped["param_groups"][0]["use_muon"] = False
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"param group 0 of the state_dict has use_muon=False.*different algorithms"):
        opt.load_state_dict(swapped)
    wrong = copy.deepcopy(saved)
    wrong["param_groups"][1]["momentum"] = 0.9  # AdamW's group with a key of Muon's
    with pytest.raises(ValueError, match=r"param group 1 of the state_dict has momentum"):
        opt.load_state_dict(wrong)
    assert_unchanged(opt, before)


def test_it_pickles_and_copies() -> None:
    model = _model()
    opt = dt.MuonWithAdamW(model, lr=0.02)
    _train(model, [opt], 2)
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.kind_defaults == opt.kind_defaults and clone.defaults == opt.defaults
    assert [set(g) for g in clone.param_groups] == [set(g) for g in opt.param_groups]
    assert "differentiable" not in clone.defaults


# -- the NumPy front --------------------------------------------------------------------------------------------------


def _numpy_model(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    return [
        ("wte.weight", rng.standard_normal((12, 4))),
        ("h.0.fc.weight", rng.standard_normal((4, 8))),
        ("h.0.fc.bias", np.zeros(8)),
        ("h.0.proj.weight", rng.standard_normal((8, 4))),
        ("lm_head.weight", rng.standard_normal((4, 12))),
    ]


def test_the_numpy_front_routes_and_steps_as_the_torch_front() -> None:
    rng = np.random.default_rng(0)
    named = _numpy_model(rng)
    tensors = [(n, torch.nn.Parameter(torch.from_numpy(a.copy()))) for n, a in named]
    ours = descend.MuonWithAdamW(named, lr=0.02, ns_dtype="float64", adamw_lr=3e-3)
    theirs = dt.MuonWithAdamW(tensors, lr=0.02, ns_dtype="float64", adamw_lr=3e-3)
    assert ours.routes() == theirs.routes()
    assert [name for name, _, a in ours.routes() if a == "Muon"] == ["h.0.fc.weight", "h.0.proj.weight"]
    by_name = dict(tensors)
    for _ in range(10):
        grads = {n: rng.standard_normal(a.shape) for n, a in named}
        ours.step([grads[n] for n, _, _ in ours.routes()])
        for n, p in tensors:
            p.grad = torch.from_numpy(grads[n].copy())
        theirs.step()
    for n, a in named:
        assert_close(by_name[n], a, {"rtol": 1e-12, "atol": 1e-14}, n)


def test_a_numpy_checkpoint_resumes_bit_for_bit(tmp_path: object) -> None:
    rng = np.random.default_rng(1)
    named = _numpy_model(rng)
    opt = descend.MuonWithAdamW(named, lr=0.02, adamw_lr=3e-3)
    grads = [[rng.standard_normal(p.shape) for p in opt.params] for _ in range(8)]
    for g in grads[:4]:
        opt.step(g)
    path = descend.save(tmp_path / "run.npz", opt, step=4)
    for g in grads[4:]:
        opt.step(g)
    fresh = descend.MuonWithAdamW(_numpy_model(np.random.default_rng(9)), lr=0.02, adamw_lr=3e-3)
    assert descend.load(path, fresh) == {"step": 4}
    for g in grads[4:]:
        fresh.step(g)
    for p, q in zip(opt.params, fresh.params):
        assert p.tobytes() == q.tobytes()
    adam = descend.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match=r"holds a 'muon_with_adamw' checkpoint; it cannot be loaded into Adam"):
        descend.load(path, adam)


def test_a_numpy_step_refused_changes_nothing() -> None:
    opt = descend.MuonWithAdamW(_numpy_model(np.random.default_rng(2)), nan_policy="raise")
    opt.step([np.ones(p.shape) for p in opt.params])
    before = snapshot(opt)
    grads = [np.ones(p.shape) for p in opt.params]
    grads[-1][0] = np.nan  # the last AdamW parameter: the Muon group before it is not written either
    with pytest.raises(ValueError, match=r"parameter 4 .* holds NaN or infinite values; nan_policy='raise' stopped"):
        opt.step(grads)
    assert_unchanged(opt, before)
