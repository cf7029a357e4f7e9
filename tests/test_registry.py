"""The registry every pluggable kind uses: names, help, lazy paths and the unknown-name error."""

import sys

import pytest

from factory.core.errors import FactoryError
from factory.core.registry import Registry


def test_register_by_call_and_by_decorator_with_help():
    reg: Registry = Registry("widget")
    reg.register("one", len, help="counts things")

    @reg.register("two")
    def two(x):
        """Doubles x,
        the whole first paragraph.

        More text that the listing does not show."""
        return 2 * x

    assert two(3) == 6 and reg.get("two") is two and reg.get("one") is len
    assert reg.names() == ["one", "two"] and list(reg) == ["one", "two"] and len(reg) == 2
    assert reg.items() == [("one", "counts things"), ("two", "Doubles x, the whole first paragraph.")]
    assert "one" in reg and "three" not in reg and ["unhashable"] not in reg


def test_unknown_name_is_one_line_listing_the_known_names():
    reg: Registry = Registry("widget", hint="; or write module:attr")
    reg.register("one", len, help="h")
    reg.register("two", len, help="h")
    with pytest.raises(FactoryError) as e:
        reg.get("three")
    assert str(e.value) == "unknown widget 'three': the widgets are one, two; or write module:attr"
    with pytest.raises(FactoryError, match=r"unknown widget \['x'\]"):
        reg.get(["x"])


def test_a_path_entry_is_imported_on_first_get_only(tmp_path, monkeypatch):
    (tmp_path / "heavy_plugin_mod.py").write_text('class Heavy:\n    """Stands in for a heavy backend."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("widget")
    reg.register("light", "heavy_plugin_mod:Heavy", help="given help")
    reg.register("heavy", "heavy_plugin_mod:Heavy")
    assert reg.names() == ["light", "heavy"] and "heavy" in reg
    assert reg.help("light") == "given help"
    assert "heavy_plugin_mod" not in sys.modules
    assert reg.help("heavy") == "Stands in for a heavy backend."  # no help given: the docstring's
    assert reg.get("heavy") is sys.modules["heavy_plugin_mod"].Heavy
    monkeypatch.delitem(sys.modules, "heavy_plugin_mod")
