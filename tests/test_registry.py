"""tasks.registry.Registry: the one registry behind every named choice of a config."""
import pytest

from tasks.registry import Registry


def test_a_name_is_registered_once_and_listed_sorted():
    reg = Registry("schedule", key="schedule.name")
    reg.register("cosine")(lambda: "c")
    reg.add("step", lambda: "s", milestones=(30, 60))
    assert reg.names() == ["cosine", "step"] and list(reg) == ["cosine", "step"] and len(reg) == 2
    assert reg.get("step")() == "s" and reg.info["step"] == {"milestones": (30, 60)} and "cosine" in reg
    with pytest.raises(ValueError, match="needs a new name, got 'cosine' \\(already registered\\)"):
        reg.add("cosine", lambda: "again")
    assert reg.get("cosine")() == "c"                    # the first registration stands
    assert reg.pop("step")() == "s" and reg.names() == ["cosine"] and reg.pop("step", 0) == 0


def test_an_unknown_name_is_refused_with_the_nearest_and_the_known_ones():
    keyed = Registry("schedule", key="schedule.name")
    plain = Registry("corruption")
    for reg in (keyed, plain):
        reg.add("cosine", 1)
        reg.add("constant", 2)
    with pytest.raises(ValueError) as info:
        keyed.get("cosnie")
    assert str(info.value) == "schedule.name must be one of ['constant', 'cosine'], got 'cosnie' (did you mean 'cosine'?)"
    with pytest.raises(ValueError) as info:
        plain.get("zzz")
    assert str(info.value) == "unknown corruption 'zzz'; known: constant, cosine"


def test_a_class_registers_under_its_name_and_discovery_imports_a_package_once():
    from tasks.classify.kinds import KINDS, ModelKind

    assert {"single", "ensemble", "mimo", "joint", "dirichlet"} <= set(KINDS.names())   # found in its modules
    assert all(issubclass(KINDS.get(n), ModelKind) for n in KINDS.names())
    assert KINDS.find(lambda k: k.name.startswith("mi"), ["single", "mimo"]) == "mimo"

    reg = Registry("kind")

    @reg.register()
    class Named:
        name = "named"

    assert reg.get("named") is Named
    with pytest.raises(ValueError, match="needs a new name, got ''"):
        reg.register()(type("Nameless", (), {"name": ""}))
