import pytest

from svbench._registry import Registry
from svbench.errors import UserError
from svbench.methods import METHODS, create_method


def test_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="duplicate"):
        reg.add("a", 2)


def test_unknown_name_lists_available_and_closest():
    with pytest.raises(UserError) as e:
        METHODS.get("sedgi")
    msg = str(e.value)
    assert "Did you mean 'sedghi'" in msg
    for name in METHODS.names():
        assert name in msg


def test_create_method_validates_config():
    m = create_method("sedghi", backend="eigh")
    assert m.config.backend == "eigh"
    assert m.label == "sedghi(backend=eigh)"
    with pytest.raises(UserError, match="unknown key 'bakend'.*did you mean 'backend'"):
        create_method("sedghi", bakend="eigh")
    with pytest.raises(UserError, match="expected one of"):
        create_method("sedghi", backend="magic")
    with pytest.raises(UserError, match="clip_to must be > 0"):
        create_method("sedghi", clip_to=-1.0)
    for name, key, value in (("sedghi", "merge", "all"), ("tt", "merge", "pad-all"), ("gram", "products", "fast")):
        with pytest.raises(UserError, match=f"{key}: expected one of"):
            create_method(name, **{key: value})


def test_list_pattern():
    assert METHODS.names("sed*") == ["sedghi"]
