"""Imports flow one way (front ends -> paper packages -> recsys_core -> gpu_ops), and importing
compiles nothing: the parallel GEMM wrapper and PyTensor's modules are built at first use."""
import ast
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Everything of the project above gpu_ops: its packages and the front-end scripts.
PROJECT = sorted({os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, '*', '__init__.py'))}
                 - {'gpu_ops'} | {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, '*.py'))})


def _imported_names(path):
    """Top-level module names a source file imports (statements, importlib.import_module and
    __import__ with a constant name), wherever in the file."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split('.')[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split('.')[0], node.lineno
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, 'attr', getattr(node.func, 'id', None)) in ('import_module', '__import__')):
            yield node.args[0].value.split('.')[0], node.lineno


def test_gpu_ops_sources_import_nothing_of_the_project():
    assert {'recsys_core', 'gru4rec', 'nextitnet', 'cprec', 'baselines', 'run', 'paropt'} <= set(PROJECT)
    sources = glob.glob(os.path.join(ROOT, 'gpu_ops', '**', '*.py'), recursive=True)
    assert len(sources) > 10
    upward = ['{}:{}: {}'.format(os.path.relpath(p, ROOT), line, name)
              for p in sources for name, line in _imported_names(p) if name in PROJECT]
    assert not upward, upward


def _python(code, env=None, timeout=300):
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_importing_gpu_ops_loads_nothing_of_the_project():
    out = _python('''
        import pkgutil, sys, importlib
        import gpu_ops
        for m in pkgutil.iter_modules(gpu_ops.__path__):
            importlib.import_module('gpu_ops.' + m.name)
        print(sorted({name.split('.')[0] for name in sys.modules} & set(%r)))
        ''' % (PROJECT,))
    assert out.strip() == '[]', out


@pytest.mark.slow
def test_imports_compile_nothing_and_the_first_compile_builds_the_wrapper(tmp_path):
    """With empty caches, importing every package runs no compiler and writes nothing; the first
    compile_function builds the GEMM wrapper (before PyTensor compiles the graph that links it)."""
    gxx = shutil.which('g++')
    if not gxx:
        pytest.skip('no g++')
    log = tmp_path / 'compiler.log'
    cxx = tmp_path / 'g++'
    cxx.write_text('#!/bin/sh\necho "$@" >> {}\nexec {} "$@"\n'.format(log, gxx))
    cxx.chmod(0o755)
    cache, compiledir = tmp_path / 'cache', tmp_path / 'pytensor'
    env = {k: v for k, v in os.environ.items() if k not in ('PYTENSOR_FLAGS', 'RECSYS_PARALLEL_GEMM')}
    env.update(XDG_CACHE_HOME=str(cache), CXX=str(cxx),
               PYTENSOR_FLAGS='base_compiledir={},cxx={}'.format(compiledir, cxx))
    out = _python('''
        import os, sys
        import recsys_core, gpu_ops, gru4rec, nextitnet, cprec, baselines
        import gru4rec.model, nextitnet.model, cprec.model, recsys_core.evaluation, recsys_core.optim
        import run, paropt, recommend
        from recsys_core import backend
        backend.configure('cpu')
        log, cache, compiledir = %r, %r, %r
        print('after import: compiler runs', open(log).read().count(chr(10)) if os.path.exists(log) else 0,
              'cache', os.path.exists(cache), 'compiledir', os.listdir(compiledir) if os.path.exists(compiledir) else [])
        import pytensor, pytensor.tensor as pt
        a = pt.matrix('a')
        f = backend.compile_function([a], pt.dot(a, a) + 1)
        import numpy as np
        assert np.allclose(f(np.eye(3, dtype='float32')), np.eye(3) + 1)
        print('wrapper', recsys_core.parallel_ops(), 'in flags', '-lrecsys_parallel_gemm' in pytensor.config.blas__ldflags)
        ''' % (str(log), str(cache), str(compiledir)), env=env, timeout=600)
    assert 'after import: compiler runs 0 cache False compiledir []' in out, out
    lines = log.read_text().splitlines()
    assert lines and 'parallel_gemm.cpp' in lines[0], lines[:3]  # the wrapper first, then PyTensor's modules
    assert any('-lrecsys_parallel_gemm' in line for line in lines[1:]), 'no PyTensor module linked the wrapper'
    assert glob.glob(str(cache / 'recsys_pytensor' / 'parallel_gemm-*' / 'librecsys_parallel_gemm.so'))
    assert 'wrapper True in flags True' in out, out


def test_the_map_of_a_training_step_names_what_exists():
    """recsys_core's docstring walks from run.py to the compiled step and its Ops: every module,
    file, class and method it names exists, so the map cannot drift from the code unnoticed."""
    import importlib
    import re
    import recsys_core
    doc = recsys_core.__doc__
    route = doc[doc.index('One training step, end to end'):]
    root = os.path.dirname(os.path.dirname(os.path.abspath(recsys_core.__file__)))
    for path in re.findall(r'\b[\w]+/[\w/]*\w(?:\.py)?\b', route):
        assert os.path.exists(os.path.join(root, path)), path
    named = set(re.findall(r'\b(?:gpu_ops|recsys_core)(?:\.\w+)+', route))
    named |= {'recsys_core.' + n for n in re.findall(r'(?<![\w./])((?:model|trainer|backend|batching|sequence_model|'
                                                     r'sampling|optim)\.[\w.]+\w)', route)}
    assert len(named) >= 12
    for dotted in named:
        parts = dotted.split('.')
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module('.'.join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError: the map names something that is not there
    for method in re.findall(r'\b(_\w+)\b', route):
        import gru4rec.model as gru_model
        import recsys_core.sequence_model as seq_model
        assert any(hasattr(cls, method) for cls in (gru_model.GRU4Rec, seq_model.SequenceRecommender,
                                                     recsys_core.model.NeuralRecommender)), method
