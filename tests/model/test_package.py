"""model's public names, imported lazily."""

from __future__ import annotations

import subprocess
import sys

import model as model


def test_every_public_name_resolves():
    assert sorted(model.__all__) == sorted(model._WHERE)
    for name in model.__all__:
        assert getattr(model, name) is not None


def test_tokenizer_and_corpus_filters_do_not_import_torch():
    # Corpus workers need the tokenizer's split pattern, not PyTorch (about 200 MB each).
    code = (
        "import sys, model.tokenizer, tasks.corpus.filters\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_public_name_is_hidden_by_a_submodule():
    # Importing model.X sets the package attribute X to the module, which would
    # hide a lazily imported name X; so no submodule may share a public name.
    code = (
        "import pkgutil, model as m\n"
        "subs = {i.name for i in pkgutil.iter_modules(m.__path__)}\n"
        "assert not subs & set(m.__all__), subs & set(m.__all__)\n"
        "for s in subs: __import__('model.' + s)\n"
        "assert all(not isinstance(getattr(m, n), type(m)) for n in m.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
